"""QIDO-RS attribute matching (PS3.18 §10.6, PS3.4 C.2.2.2): the study, series and instance
records a search returns, and how a query key matches them: single value, UID list (``\\`` or
``,``), ``*``/``?`` wildcards (case-insensitive for person names), and date ranges."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from resources.errors import Invalid

STUDY_KEYS = (
    "StudyDate StudyTime AccessionNumber ModalitiesInStudy ReferringPhysicianName PatientName "
    "PatientID PatientBirthDate PatientSex StudyInstanceUID StudyID StudyDescription "
    "NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances"
).split()
SERIES_KEYS = (
    "Modality SeriesInstanceUID SeriesNumber SeriesDescription PerformedProcedureStepStartDate "
    "NumberOfSeriesRelatedInstances"
).split()
INSTANCE_KEYS = "SOPClassUID SOPInstanceUID InstanceNumber Rows Columns NumberOfFrames".split()
CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def keyword(key: str) -> str:
    """A query key (keyword or ``ggggeeee``) as a keyword; ``Invalid`` when unknown."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        kw = keyword_for_tag(Tag(int(key, 16)))
        if kw:
            return kw
    elif tag_for_keyword(key) is not None:
        return key
    raise Invalid(f"{key!r} is not a DICOM attribute keyword or tag")


def parse_query(pairs: Iterable[tuple[str, str]], allowed: list[str]) -> tuple[dict, int, int]:
    """(criteria by keyword, offset, limit)."""
    criteria: dict[str, str] = {}
    offset, limit = 0, 100
    for key, value in pairs:
        if key == "offset" or key == "limit":
            if not value.isdigit():
                raise Invalid(f"{key} must be a non-negative integer")
            if key == "offset":
                offset = int(value)
            else:
                limit = min(int(value), 1000)
        elif key in CONTROL:
            continue
        else:
            kw = keyword(key.split(".")[0])
            if kw not in allowed:
                raise Invalid(f"{kw} cannot be matched at this level")
            criteria[kw] = value
    return criteria, offset, limit


def _values(ds: Dataset, kw: str) -> list[str]:
    value = ds.get(kw)
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def matches(ds: Dataset, criteria: dict[str, str]) -> bool:
    for kw, wanted in criteria.items():
        if wanted == "":
            continue
        if not matcher(kw, wanted)(_values(ds, kw)):
            return False
    return True


def values_of(ds: Dataset, kw: str) -> list[str]:
    """The attribute's values as strings (what ``matcher``'s predicates take)."""
    return _values(ds, kw)


@functools.lru_cache(maxsize=1024)
def matcher(kw: str, wanted: str) -> Callable[[list[str]], bool]:
    """Whether any of an attribute's values (``values_of``) matches the non-empty key
    ``wanted`` — the rules of ``matches``, compiled once per key."""
    vr = dictionary_VR(kw)
    if vr == "UI":
        options = set(re.split(r"[\\,]", wanted))
        return lambda have: any(h in options for h in have)
    if vr in ("DA", "DT", "TM") and "-" in wanted:
        lo, hi = wanted.split("-", 1)
        top = hi + "\uffff"
        return lambda have: any((not lo or h >= lo) and (not hi or h <= top) for h in have)
    if "*" in wanted or "?" in wanted or vr == "PN":
        pattern = re.escape(wanted).replace(r"\*", ".*").replace(r"\?", ".")
        flags = re.IGNORECASE if vr == "PN" else 0
        if vr == "PN" and "*" not in wanted and "?" not in wanted:
            pattern += ".*"  # PN: prefix match of the family name component
        full = re.compile(pattern, flags).fullmatch
        return lambda have: any(full(h) for h in have)
    return lambda have: any(h == wanted for h in have)
