"""The DICOM instance store: each instance kept once, as its DICOM Part 10 file, by SOP Instance
UID, in the blob store (``resources/storage/blobs.py``: a folder under ``{data_dir}``, or the
database); never in the resource table.

``InstanceStore`` is the interface the rest of Hearth uses (``put``, ``open``, ``stamp``,
``exists``, ``delete``). A put is all or nothing (the blob store's guarantee), so a reader never
sees half an instance and a crash leaves nothing half-stored; storing the same UID again replaces
the instance (re-sending is idempotent). The journal of acknowledged instances not yet in FHIR
stays on the receiving node's own disk: it is that node's promise, replayed by that node.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from resources.errors import Invalid, NotFound
from resources.storage.blobs import BlobStore, FileBlobs

# PS3.5 §9.1: components of digits, no leading zero except "0" itself, separated by "."; 64 max.
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def is_uid(value: object) -> bool:
    """True when ``value`` follows the DICOM UID grammar (PS3.5 §9.1)."""
    return isinstance(value, str) and len(value) <= 64 and UID_RE.match(value) is not None


# Not PS3.5 §9.1, but unambiguous and what real equipment sends (hexadecimal digits, leading
# zeros: "1.2.840.0113654.2.70.1.A3F"): dot-separated runs of ASCII letters and digits, 64 at
# most. Accepted and stored as sent (with a warning in the ImagingStudy note); still safe as a file
# name (no empty component, so never "." or "..").
LENIENT_UID_RE = re.compile(r"^[0-9A-Za-z]+(\.[0-9A-Za-z]+)+$")


def is_lenient_uid(value: object) -> bool:
    """True for a valid UID and for a not-strictly-valid but unambiguous one (above)."""
    return isinstance(value, str) and len(value) <= 64 and LENIENT_UID_RE.match(value) is not None


def check_uid(value: object, what: str = "SOP Instance UID") -> str:
    """``value`` when it is a UID Hearth stores (valid, or not strictly valid but unambiguous:
    ``is_lenient_uid``); ``Invalid`` otherwise."""
    if not is_lenient_uid(value):
        raise Invalid(f"{what} {value!r} is not a valid DICOM UID (PS3.5 §9.1)")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class PutResult:
    sop_instance_uid: str
    key: str
    size: int
    created: bool  # False when the UID was already stored (the instance was replaced)


class InstanceStore:
    """Instances in ``blobs`` under ``dicom/{h[:2]}/{h[2:4]}/{uid}.dcm`` where ``h`` is the sha1
    of the UID (spreads files across folders; the UID stays readable); the pending journal under
    ``{data_dir}/dicom/pending``."""

    def __init__(self, data_dir: Path | str, blobs: BlobStore | None = None) -> None:
        self.root = Path(data_dir) / "dicom"
        self.blobs: BlobStore = blobs if blobs is not None else FileBlobs(Path(data_dir))

    # -- the interface ----------------------------------------------------------------------
    def key(self, sop_instance_uid: str) -> str:
        """The blob key of the instance. Raises ``Invalid`` for a bad UID."""
        uid = check_uid(sop_instance_uid)
        h = hashlib.sha1(uid.encode()).hexdigest()
        return f"dicom/{h[:2]}/{h[2:4]}/{uid}.dcm"

    def exists(self, sop_instance_uid: str) -> bool:
        return self.blobs.exists(self.key(sop_instance_uid))

    def put(self, sop_instance_uid: str, data: bytes | Iterable[bytes]) -> PutResult:
        """Store the Part 10 bytes of one instance, all or nothing."""
        key = self.key(sop_instance_uid)
        existed = self.blobs.exists(key)
        size = self.blobs.put(key, data)
        return PutResult(sop_instance_uid, key, size, not existed)

    def open(self, sop_instance_uid: str) -> BinaryIO:
        """The stored Part 10 file, opened for reading (seekable); ``NotFound`` when not
        stored."""
        try:
            return self.blobs.open(self.key(sop_instance_uid))
        except NotFound:
            raise NotFound(f"instance {sop_instance_uid} is not stored") from None

    def local_path(self, sop_instance_uid: str) -> Path | None:
        """The instance's file on this node when the blob store keeps files (``FileBlobs``), for
        sending it without reading it whole; None for the database store (or when missing)."""
        if not isinstance(self.blobs, FileBlobs):
            return None
        path = self.blobs.path(self.key(sop_instance_uid))
        return path if path.is_file() else None

    def read(self, sop_instance_uid: str) -> bytes:
        with self.open(sop_instance_uid) as f:
            return f.read()

    def stamp(self, sop_instance_uid: str) -> str | None:
        """What changes whenever the instance is stored again (None: not stored): for caches."""
        return self.blobs.stamp(self.key(sop_instance_uid))

    # -- the journal of instances acknowledged but not yet in FHIR ----------------------------
    # ``{root}/pending/{study uid}/{sop uid}``: an empty file per instance, made durable before
    # the sender is told "success" and removed once its ImagingStudy write has committed; a
    # study whose writes kept failing also has ``{root}/pending/{study uid}.failed`` (JSON: when,
    # attempts, the error's type). Nothing here is ever removed except by a committed write.
    def _pending_root(self) -> Path:
        return self.root / "pending"

    def mark_pending(self, study_uid: str, sop_instance_uid: str) -> None:
        folder = self._pending_root() / check_uid(study_uid, "Study Instance UID")
        marker = folder / check_uid(sop_instance_uid)
        for attempt in range(20):
            # ``clear_pending`` removes the study's folder once it is empty (and the marker of
            # an instance whose earlier copy was just written): between these steps the folder
            # may be gone again (ENOENT), or be going while mkdir looks (EEXIST, then not a
            # directory) — start again, so that the marker is durable when this returns
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _fsync_dir(folder)
                if marker.exists():
                    return
            except (FileNotFoundError, FileExistsError):
                if attempt == 19:
                    raise
        raise FileNotFoundError(f"pending marker {marker} kept disappearing")

    def clear_pending(self, study_uid: str, sop_instance_uids: Iterable[str]) -> None:
        folder = self._pending_root() / check_uid(study_uid, "Study Instance UID")
        for uid in sop_instance_uids:
            try:
                (folder / check_uid(uid)).unlink()
            except FileNotFoundError:
                pass
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
        try:
            (self._pending_root() / f"{study_uid}.failed").unlink()
        except FileNotFoundError:
            pass

    def pending(self) -> dict[str, list[str]]:
        """Study UID -> SOP Instance UIDs acknowledged but not yet written to FHIR."""
        root = self._pending_root()
        if not root.is_dir():
            return {}
        out: dict[str, list[str]] = {}
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and is_lenient_uid(folder.name):
                uids = sorted(p.name for p in folder.iterdir() if is_lenient_uid(p.name))
                if uids:
                    out[folder.name] = uids
        return out

    def mark_failed(self, study_uid: str, detail: dict) -> None:
        """Dead-letter a study: its writes kept failing; it waits for ``hearth dicom-replay``."""
        import json

        root = self._pending_root()
        root.mkdir(parents=True, exist_ok=True)
        target = root / f"{check_uid(study_uid, 'Study Instance UID')}.failed"
        fd, tmp = tempfile.mkstemp(prefix=".failed-", dir=root)
        with os.fdopen(fd, "w") as out:
            json.dump(detail, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)

    def failed(self) -> dict[str, dict]:
        """Dead-lettered studies: study UID -> what ``mark_failed`` recorded."""
        import json

        root = self._pending_root()
        if not root.is_dir():
            return {}
        out = {}
        for p in sorted(root.glob("*.failed")):
            try:
                out[p.name.removesuffix(".failed")] = json.loads(p.read_text())
            except (OSError, ValueError):
                out[p.name.removesuffix(".failed")] = {}
        return out

    def clear_failed(self, study_uid: str) -> None:
        try:
            (self._pending_root() / f"{check_uid(study_uid, 'Study Instance UID')}.failed").unlink()
        except FileNotFoundError:
            pass

    def delete(self, sop_instance_uid: str) -> bool:
        return self.blobs.delete(self.key(sop_instance_uid))


def _fsync_dir(folder: Path) -> None:
    """Make a new directory entry durable (POSIX: fsync the directory)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
