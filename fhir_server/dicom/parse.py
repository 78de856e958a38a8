"""Checks one received DICOM Part 10 instance before anything is stored (PS3.10 §7), and says
which DICOM failure status a bad one earns (PS3.4 Annex B.2.3, GG.4 for STOW-RS)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from mappings.dicom.imaging_study import uid_warning
from resources.storage.instances import is_lenient_uid, is_uid

# PS3.4 B.2.3 / PS3.18 Table 10.5.3-1 failure reasons
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
ELEMENTS_DISCARDED = 0xB006


class Rejected(Exception):
    """The instance is refused with DICOM ``status``; nothing was stored."""

    def __init__(self, status: int, reason: str, sop_class: str | None = None, sop_uid=None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.sop_class = sop_class
        self.sop_uid = sop_uid


@dataclass(frozen=True)
class Checked:
    dataset: Dataset  # the header (pixel data not decoded)
    sop_uid: str
    sop_class: str
    transfer_syntax: str
    warnings: tuple[str, ...] = ()  # accepted, but not as the standard says (UID grammar)


REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")

# A received instance is either its bytes (small) or the path of a file holding it (a large
# C-STORE written to disk by pynetdicom, a large STOW-RS part spooled to disk): never read whole.
Source = bytes | Path
DEFER = 64 * 1024  # values longer than this (pixel data) are not read when checking a file
CHUNK = 1 << 20


def chunks(source: Source) -> Iterator[bytes]:
    """The bytes of ``source``, a megabyte at a time (what the instance store writes)."""
    if isinstance(source, bytes):
        yield source
        return
    with open(source, "rb") as f:
        while block := f.read(CHUNK):
            yield block


def check(source: Source, supported_sop_classes: frozenset[str] | None = None) -> Checked:
    """Parse and check a Part 10 file: readable, complete (no truncated element, every undefined
    length closed by its delimiter), the four UIDs present and well-formed, the file meta
    agreeing with the data set, and (when given) a supported SOP class.

    Given a path, only the header is held in memory: values over ``DEFER`` bytes (pixel data,
    encapsulated fragments included) are skipped by pydicom and checked against the file's size,
    so a 1 GB multi-frame object costs its header, not a gigabyte."""
    size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if isinstance(source, bytes):
                ds = dcmread(io.BytesIO(source))
            else:
                ds = dcmread(source, defer_size=DEFER)
        except (InvalidDicomError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise Rejected(CANNOT_UNDERSTAND, f"not a readable DICOM Part 10 file: {exc}") from exc
    if any("delimiter" in str(w.message) for w in caught):
        raise Rejected(CANNOT_UNDERSTAND, "truncated: end of file before a sequence delimiter")
    for elem in ds._dict.values():  # top level; nested items live inside these byte values
        if not isinstance(elem, RawDataElement) or elem.length == 0xFFFFFFFF:
            continue
        if elem.value is None and elem.length and elem.value_tell + elem.length > size:
            raise Rejected(  # a deferred (unread) value that the file is too short to hold
                CANNOT_UNDERSTAND,
                f"truncated: element {elem.tag} declares {elem.length} bytes, "
                f"has {max(size - elem.value_tell, 0)}",
            )
        if elem.value:
            if len(elem.value) != elem.length:
                raise Rejected(
                    CANNOT_UNDERSTAND,
                    f"truncated: element {elem.tag} declares {elem.length} bytes, "
                    f"has {len(elem.value)}",
                )
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta else ""
    if meta is None or not is_uid(ts):
        raise Rejected(CANNOT_UNDERSTAND, "the file meta has no Transfer Syntax UID (0002,0010)")
    missing = []
    notes: list[str] = []
    for kw in REQUIRED_UIDS:
        try:
            value = ds.get(kw)
        except Exception:  # a malformed value  # noqa: BLE001
            value = None
        text = str(value).strip("\x00 ") if value is not None else None
        if not is_lenient_uid(text):
            missing.append(kw)
        elif (note := uid_warning(text, kw)) is not None:  # type: ignore[arg-type]
            notes.append(note)
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    if missing:
        raise Rejected(
            DOES_NOT_MATCH_SOP_CLASS,
            "missing or malformed " + ", ".join(missing),
            sop_class or None,
            sop_uid or None,
        )
    if meta.get("MediaStorageSOPInstanceUID") not in (None, "", sop_uid):
        raise Rejected(
            DOES_NOT_MATCH_SOP_CLASS,
            "Media Storage SOP Instance UID (0002,0003) differs from SOP Instance UID (0008,0018)",
            sop_class,
            sop_uid,
        )
    if supported_sop_classes is not None and sop_class not in supported_sop_classes:
        raise Rejected(
            SOP_CLASS_NOT_SUPPORTED, f"SOP class {sop_class} is not stored here", sop_class, sop_uid
        )
    return Checked(ds, sop_uid, sop_class, ts, tuple(notes))
