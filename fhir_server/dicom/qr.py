"""Query/Retrieve SCP (PS3.4 Annex C): C-FIND, C-MOVE and C-GET for the Patient Root and Study
Root information models, over what Hearth stores.

What is searched is what DICOMweb serves: the ImagingStudy resources the ingest service wrote
(read through the Repository: ``resources/`` runs the SQL) and the headers of the stored
instance files — nothing is indexed twice. The repository search narrows the candidate
studies by the keys it answers as a superset (``_narrowing``, ``_started``: one Study Instance
UID, Patient ID, Accession Number, modality, a Study Date or range through ImagingStudy
``started``); every key is then matched here, on the cached headers, with QIDO-RS's rules
(``qido.matches``: single values, UID lists, ``*``/``?`` wildcards, date and time ranges;
a Person Name without wildcards matches as a prefix of the name, case-insensitively).

A response carries every key of the request's identifier, with Hearth's value or empty
(PS3.4 C.4.1.1.3.2); keys that are not attributes of the stored headers (a private tag, a
sequence) are returned empty and never narrow the match. Computed keys: Number of Patient /
Study / Series Related Studies / Series / Instances, Modalities in Study, SOP Classes in Study.

C-MOVE sends to the AE titles of ``HEARTH_DICOM_DESTINATIONS`` only (an unknown destination is
0xA801). C-MOVE and C-GET send each instance in a syntax the receiving association accepted,
transcoding (``transcode``) when the stored one was not.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom.presentation import PresentationContext, build_context

from mappings.dicom.imaging_study import STUDY_UID_SYSTEM
from resources.storage.instances import InstanceStore, is_lenient_uid
from resources.storage.repository import Repository, Unit

from . import qido, transcode

log = logging.getLogger("hearth.dicom.qr")

# PS3.4 C.4.1.1.4 / C.4.2.1.4 / C.4.3.1.4 statuses
PENDING = 0xFF00
SUCCESS = 0x0000
CANCELLED = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
MOVE_DESTINATION_UNKNOWN = 0xA801
HEADER_CACHE = 20_000  # stored headers kept in memory for C-FIND (the oldest go first)
NOT_AUTHORIZED = 0x0124  # PS3.7 C.5.x "Refused: Not Authorized"
SUB_OPS_FAILED = 0xB000  # warning: one or more sub-operations failed

PATIENT_ROOT = "patient"
STUDY_ROOT = "study"
# Query/Retrieve Level (0008,0052) values each information model allows (PS3.4 C.6.1, C.6.2)
LEVELS = {
    PATIENT_ROOT: ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    STUDY_ROOT: ("STUDY", "SERIES", "IMAGE"),
}
# the unique key of each level (PS3.4 C.6.1.1, C.6.2.1)
UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
# study record keys computed from the ImagingStudy, not read from the header (_study_record)
COMPUTED = {
    "ModalitiesInStudy",
    "SOPClassesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
}
NOT_MATCHED = {
    "QueryRetrieveLevel",
    "SpecificCharacterSet",
    "RetrieveAETitle",
    "TimezoneOffsetFromUTC",
}


class QueryError(Exception):
    """The identifier cannot be answered; ``status`` is the DICOM failure status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Destination:
    """A C-MOVE destination: where the AE title ``ae_title`` listens."""

    ae_title: str
    host: str
    port: int


def parse_destinations(text: str) -> dict[str, Destination]:
    """``HEARTH_DICOM_DESTINATIONS``: ``AE@host:port`` items, comma-separated."""
    out: dict[str, Destination] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        ae, at, address = item.partition("@")
        host, colon, port = address.rpartition(":")
        if not (at and colon and ae.strip() and host and port.isdigit()):
            raise ValueError(f"DICOM destination {item!r} is not AE@host:port")
        if len(ae.strip()) > 16 or not 0 < int(port) < 65536:
            raise ValueError(f"DICOM destination {item!r}: AE title > 16 characters or bad port")
        out[ae.strip()] = Destination(ae.strip(), host.strip("[]"), int(port))
    return out


@dataclass
class Match:
    """One record at the query level, and the stored instances under it (for retrieval)."""

    record: Dataset
    instances: list[str] = field(default_factory=list)


@dataclass
class QueryRetrieve:
    """The query engine and the sub-operation source of the Q/R SCP."""

    repo: Repository
    store: InstanceStore
    destinations: dict[str, Destination] = field(default_factory=dict)
    callers: list[str] = field(default_factory=list)  # calling AE titles allowed; "*": any
    # narrow the candidate studies in the repository search (off: read every ImagingStudy and
    # match in Python; the same answers, for tests and the bench's baseline)
    narrow: bool = True
    _headers: dict[str, tuple[str, Dataset]] = field(default_factory=dict)
    # decoded ImagingStudies by primary key, with the (id, version) they were read at
    _studies_seen: dict[int, tuple[tuple[str, int], dict]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allows(self, calling_ae: str) -> bool:
        return "*" in self.callers or calling_ae.strip() in self.callers

    # -- C-FIND ---------------------------------------------------------------------------
    def find(self, identifier: Dataset, model: str) -> list[Dataset]:
        """The response identifiers for a C-FIND request."""
        level, criteria, keys = self._parse(identifier, model)
        out = []
        wanted = {*keys, "SpecificCharacterSet"}
        for m in self._matches(level, criteria, wanted):
            rec = Dataset()
            if "SpecificCharacterSet" in identifier or "SpecificCharacterSet" in m.record:
                rec.SpecificCharacterSet = m.record.get("SpecificCharacterSet", "ISO_IR 192")
            for kw in keys:
                if kw == "SpecificCharacterSet":
                    continue
                if kw in m.record:
                    rec[kw] = m.record[kw]
                else:
                    rec.add_new(kw, dictionary_VR(kw), None)
            rec.QueryRetrieveLevel = level
            out.append(rec)
        return out

    # -- C-MOVE / C-GET -------------------------------------------------------------------
    def instances(self, identifier: Dataset, model: str) -> list[str]:
        """The SOP Instance UIDs a C-MOVE / C-GET identifier names (PS3.4 C.4.2.2.1: unique
        keys at and above the level; other keys are ignored)."""
        level, criteria, _ = self._parse(identifier, model, retrieve=True)
        uids: list[str] = []
        for m in self._matches(level, criteria, set(criteria)):
            uids.extend(m.instances)
        return list(dict.fromkeys(uids))

    def dataset(self, sop_uid: str, accepted: list[str] | None = None) -> Dataset:
        """The stored instance as a data set; with ``accepted`` (transfer syntaxes the peer
        takes for its SOP class), transcoded to the first of them when the stored syntax is not
        among them."""
        with self.store.open(sop_uid) as f:
            if accepted:
                have = transcode.stored_syntax(f)
                if have not in accepted:
                    for syntax in accepted:
                        if transcode.can_encode(syntax):
                            try:
                                f.seek(0)
                                return dcmread(io.BytesIO(transcode.transcode(f, syntax)))
                            except transcode.CannotTranscode:
                                continue
                f.seek(0)
            return dcmread(f)

    def contexts(self, sop_uids: list[str]) -> list[PresentationContext]:
        """Presentation contexts for a C-MOVE sub-association: per SOP class, each stored
        syntax, plus the uncompressed little-endian syntaxes; at most 128 (PS3.8 9.3.2.2)."""
        wanted: dict[str, set[str]] = {}
        for uid in sop_uids:
            with self.store.open(uid) as f:
                ds = dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            wanted.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
        out = []
        for sop, syntaxes in sorted(wanted.items()):
            for ts in sorted(syntaxes):
                out.append(build_context(sop, [ts]))
            out.append(build_context(sop, [transcode.DEFAULT, "1.2.840.10008.1.2"]))
        return out[:128]

    # -- the engine -----------------------------------------------------------------------
    def _parse(
        self, identifier: Dataset, model: str, *, retrieve: bool = False
    ) -> tuple[str, dict[str, list[str]], list[str]]:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if level not in LEVELS[model]:
            raise QueryError(
                IDENTIFIER_DOES_NOT_MATCH,
                f"Query/Retrieve Level {level or '(none)'} is not one of "
                f"{', '.join(LEVELS[model])} for this information model",
            )
        criteria: dict[str, list[str]] = {}
        keys: list[str] = []
        for elem in identifier:
            kw = elem.keyword or keyword_for_tag(elem.tag)
            if not kw or elem.tag.group == 0x0002:
                continue
            keys.append(kw)
            if kw in NOT_MATCHED or elem.VR == "SQ":
                continue
            values = _strings(elem.value)
            if not values:
                continue
            if retrieve and kw not in UNIQUE.values():
                continue  # C-MOVE / C-GET: unique keys only
            criteria[kw] = values
        if retrieve and not criteria.get(UNIQUE[level]):
            raise QueryError(
                IDENTIFIER_DOES_NOT_MATCH, f"a retrieve at {level} level needs {UNIQUE[level]}"
            )
        return level, criteria, keys

    def _matches(
        self, level: str, criteria: dict[str, list[str]], wanted: set[str]
    ) -> Iterator[Match]:
        """The records at ``level`` matching ``criteria``; a record holds the attributes of
        ``wanted`` (the request's keys: what is matched and answered) only."""
        studies = self._studies(criteria, level)
        if level == "PATIENT":
            yield from self._patients(studies, criteria)
            return
        study_keys = qido.STUDY_KEYS + ["PatientBirthDate"]
        early = _from_header(criteria, None if level == "STUDY" else study_keys)
        for study in studies:
            series_list = study.get("series") or []
            if not series_list:
                continue
            head = self._header(series_list[0]["instance"][0]["uid"])
            if head is None or not _matches(head, early):
                continue
            srec = _study_record(head, study, wanted)
            if level == "STUDY":
                if _matches(srec, criteria):
                    yield Match(srec, [i["uid"] for s in series_list for i in s["instance"]])
                continue
            if not _matches(srec, _only(criteria, study_keys)):
                continue
            for series in series_list:
                shead = self._header(series["instance"][0]["uid"])
                if shead is None:
                    continue
                rec = _series_record(shead, series, srec, wanted)
                if level == "SERIES":
                    if _matches(rec, criteria):
                        yield Match(rec, [i["uid"] for i in series["instance"]])
                    continue
                if not _matches(rec, _only(criteria, qido.SERIES_KEYS)):
                    continue
                for inst in series["instance"]:
                    ihead = self._header(inst["uid"])
                    if ihead is None:
                        continue
                    irec = Dataset()
                    irec.update(_without_pixels(ihead, wanted, pixels=True))
                    irec.update(rec)
                    irec.update(_without_pixels(ihead, wanted))
                    if _matches(irec, criteria):
                        yield Match(irec, [inst["uid"]])

    def _patients(self, studies: list[dict], criteria: dict[str, list[str]]) -> Iterator[Match]:
        by_patient: dict[str, tuple[Dataset, list[dict]]] = {}
        for study in studies:
            series_list = study.get("series") or []
            if not series_list:
                continue
            head = self._header(series_list[0]["instance"][0]["uid"])
            if head is None:
                continue
            pid = str(head.get("PatientID", "") or "")
            if pid not in by_patient:
                by_patient[pid] = (head, [])
            by_patient[pid][1].append(study)
        for pid in sorted(by_patient):
            head, group = by_patient[pid]
            rec = Dataset()
            for kw in (
                "SpecificCharacterSet PatientName PatientID IssuerOfPatientID PatientBirthDate "
                "PatientSex OtherPatientIDs EthnicGroup PatientComments"
            ).split():
                if kw in head:
                    rec[kw] = head[kw]
            rec.NumberOfPatientRelatedStudies = len(group)
            rec.NumberOfPatientRelatedSeries = sum(s.get("numberOfSeries", 0) for s in group)
            rec.NumberOfPatientRelatedInstances = sum(s.get("numberOfInstances", 0) for s in group)
            if _matches(rec, criteria):
                uids = [i["uid"] for s in group for se in s["series"] for i in se["instance"]]
                yield Match(rec, uids)

    def _studies(self, criteria: dict[str, list[str]], level: str = "STUDY") -> list[dict]:
        """The candidate ImagingStudies, in the order they were stored: narrowed in the
        repository search by the keys it can answer exactly or as a superset (``_narrowing``);
        the records are then matched on every key. With ``narrow`` off, every ImagingStudy."""
        query: list[tuple[str, str]] = []
        uids = criteria.get("StudyInstanceUID")
        if self.narrow and uids and len(uids) == 1:
            if not is_lenient_uid(uids[0]):
                return []
            query.append(("identifier", f"{STUDY_UID_SYSTEM}|urn:oid:{uids[0]}"))
        else:
            query.append(("identifier", f"{STUDY_UID_SYSTEM}|"))
        alternatives: list[list[tuple[str, str]]] = [[]]
        if self.narrow:
            query += _narrowing(criteria)
            dates = _started(criteria.get("StudyDate")) if level != "PATIENT" else None
            if dates:
                # a study whose ImagingStudy has no ``started`` may still have a Study Date
                # the header says in a form the mapping did not read: kept, matched below
                alternatives = [dates, [("started:missing", "true")]]

        def read(u: Unit) -> list[dict]:
            pks: set[int] = set()
            for extra in alternatives:
                pks.update(u.match("ImagingStudy", query + extra))
            current = u.current_versions(sorted(pks))
            with self._lock:
                have = {pk: self._studies_seen.get(pk) for pk in current}
            stale = [pk for pk, v in current.items() if (hit := have[pk]) is None or hit[0] != v]
            by_id = {current[pk][0]: pk for pk in stale}
            fresh = {by_id[s.res_id]: s for s in u.read_many(stale) if s.content}
            with self._lock:
                for pk, s in fresh.items():
                    if len(self._studies_seen) >= HEADER_CACHE:
                        self._studies_seen.pop(next(iter(self._studies_seen)))
                    self._studies_seen[pk] = ((s.res_id, s.version), s.content or {})
                    have[pk] = self._studies_seen[pk]
            return [hit[1] for pk in sorted(current) if (hit := have.get(pk)) is not None]

        return self.repo.read(read)

    def _header(self, sop_uid: str) -> Dataset | None:
        """The stored header (no pixel data), from a bounded cache keyed by the store's stamp of
        the instance: a re-sent instance gets a new stamp, so a stale header is never
        answered."""
        try:
            key = self.store.stamp(sop_uid)
            if key is None:
                raise FileNotFoundError(sop_uid)
            with self._lock:
                hit = self._headers.get(sop_uid)
            if hit is not None and hit[0] == key:
                return hit[1]
            with self.store.open(sop_uid) as f:
                ds = dcmread(f, stop_before_pixels=True)
        except Exception:  # listed but missing or unreadable: not answered, logged
            log.warning("instance %s is listed but cannot be read", sop_uid)
            return None
        with self._lock:
            if len(self._headers) >= HEADER_CACHE:
                self._headers.pop(next(iter(self._headers)))
            self._headers[sop_uid] = (key, ds)
        return ds


def _narrowing(criteria: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Repository search parameters that select a superset of the studies whose records match:
    an exact Patient ID through ``patient.identifier``; an exact Accession Number by
    ``identifier``; Modalities in Study / Modality by ``modality``."""
    query = []
    for key, param in (
        ("PatientID", "patient.identifier"),
        ("AccessionNumber", "identifier"),
        ("ModalitiesInStudy", "modality"),
        ("Modality", "modality"),
    ):
        values = criteria.get(key)
        if values and all(_exact(v) for v in values):
            query.append((param, ",".join(values)))
    return query


def _started(values: list[str] | None) -> list[tuple[str, str]] | None:
    """ImagingStudy ``started`` criteria for a Study Date key (one value: a date, or a range
    ``a-b``, ``a-``, ``-b`` of valid ``YYYYMMDD`` dates), widened by a day each side: ``started``
    is the Study Date and Time in the equipment's time zone (any offset under 24 h), indexed in
    UTC. None when the key cannot be narrowed (several values, a wildcard, another form)."""
    if not values or len(values) != 1:
        return None
    lo, dash, hi = values[0].partition("-")
    if not dash:
        hi = lo
    bounds = []
    for prefix, text, shift in (("ge", lo, -1), ("le", hi, 1)):
        if not text:
            continue
        day = _day(text)
        if day is None:
            return None
        try:
            bounds.append(("started", f"{prefix}{(day + timedelta(days=shift)).isoformat()}"))
        except OverflowError:  # year 1 or 9999: no bound on that side
            continue
    return bounds or None


def _day(text: str) -> date | None:
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _exact(value: str) -> bool:
    """A value the repository's token search takes as it is: no wildcard, no character with a
    meaning in FHIR search (``,`` ``|`` ``$`` ``\\``), no padding."""
    return bool(value) and value == value.strip() and not any(c in value for c in "*?,|$\\")


def _without_pixels(ds: Dataset, wanted: set[str], *, pixels: bool = False) -> Dataset:
    """The attributes of ``wanted`` that ``ds`` has, those from (7FE0,0000) on only with
    ``pixels``."""
    out = Dataset()
    for kw in wanted:
        tag = tag_for_keyword(kw)
        if tag is not None and tag in ds and (pixels or tag < 0x7FE00000):
            out.add(ds[tag])
    return out


def _study_record(head: Dataset, study: dict, wanted: set[str]) -> Dataset:
    rec = _without_pixels(head, wanted)
    rec.ModalitiesInStudy = sorted({m["code"] for m in study.get("modality", [])})
    classes = {
        i.get("sopClass", {}).get("code", "").removeprefix("urn:oid:")
        for s in study.get("series", [])
        for i in s.get("instance", [])
    }
    rec.SOPClassesInStudy = sorted(c for c in classes if c)
    rec.NumberOfStudyRelatedSeries = study.get("numberOfSeries", 0)
    rec.NumberOfStudyRelatedInstances = study.get("numberOfInstances", 0)
    return rec


def _series_record(head: Dataset, series: dict, study_rec: Dataset, wanted: set[str]) -> Dataset:
    rec = Dataset()
    rec.update(study_rec)
    rec.update(_without_pixels(head, wanted))
    rec.NumberOfSeriesRelatedInstances = series.get("numberOfInstances", 0)
    return rec


def _only(criteria: dict[str, list[str]], keys: list[str]) -> dict[str, list[str]]:
    return {k: v for k, v in criteria.items() if k in keys}


def _strings(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if str(v) != ""]
    return [str(value)]


def _matches(rec: Dataset, criteria: dict[str, list[str]]) -> bool:
    """Every key matches (PS3.4 C.2.2.2); a multi-valued key (a UID list, or values separated
    by ``\\``) matches when any of its values does; a record without the attribute does not
    match a non-empty key. Keys that are no DICOM attribute keyword are not matched."""
    for kw, values in criteria.items():
        if not _known(kw):
            continue
        have = qido.values_of(rec, kw)
        if not any(qido.matcher(kw, v)(have) for v in values):
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _known(kw: str) -> bool:
    try:
        dictionary_VR(kw)
    except KeyError:
        return False
    return True


def _from_header(criteria: dict[str, list[str]], keys: list[str] | None) -> dict[str, list[str]]:
    """The keys (of ``keys``, or all) a study record answers exactly as the header it is built
    from (``_study_record``: everything but the computed keys and the pixel data), so a header
    that fails them rules the study out before its record is built."""
    return {
        kw: v
        for kw, v in criteria.items()
        if kw not in COMPUTED
        and (keys is None or kw in keys)
        and (tag := tag_for_keyword(kw)) is not None
        and tag < 0x7FE00000
    }
