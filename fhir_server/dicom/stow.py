"""STOW-RS (PS3.18 §10.5): store instances sent as multipart/related; type="application/dicom",
answering the Referenced SOP Sequence and the Failed SOP Sequence with a Failure Reason per part
(PS3.18 Table 10.5.3-1)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import IO

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.dataset import Dataset
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from resources.errors import Invalid, TooLarge, UnsupportedMediaType
from resources.storage.instances import check_uid

from . import catalogue
from .catalogue import DICOM_JSON
from .parse import CANNOT_UNDERSTAND, Rejected, Source, check
from .sop_classes import STORAGE_UIDS

router = APIRouter()
log = logging.getLogger("hearth.dicomweb")


SPOOL = 8 << 20  # a part larger than this goes to a temporary file as it arrives


class _PartReader:
    """Streams a multipart/related body (RFC 2387) with python-multipart, yielding each part
    (content type, data) as soon as it is complete. A part up to ``SPOOL`` bytes is kept in
    memory (bytes); a larger one is written to a temporary file as it arrives and given as its
    path (the caller removes it): memory holds at most ``SPOOL`` bytes of an upload, whatever
    the size of its instances."""

    def __init__(self, boundary: bytes) -> None:
        self.done: list[tuple[str, Source]] = []
        self._data: list[bytes] = []
        self._held = 0
        self._spool: IO[bytes] | None = None
        self._field = b""
        self._value = b""
        self._headers: dict[str, str] = {}
        self.parts_seen = 0
        self.open_part = False  # a part began and the body ended before its boundary
        callbacks = {
            "on_part_begin": self._begin,
            "on_part_data": self._part_data,
            "on_part_end": self._end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
        }
        self.parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def _begin(self) -> None:
        self._data, self._headers, self._held = [], {}, 0
        self.open_part = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._spool is not None:
            self._spool.write(data[start:end])
            return
        self._data.append(data[start:end])
        self._held += end - start
        if self._held > SPOOL:
            self._spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in _end / close)
                prefix="hearth-stow-", suffix=".dcm", delete=False
            )
            for block in self._data:
                self._spool.write(block)
            self._data, self._held = [], 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode(
            "latin-1"
        ).strip()
        self._field, self._value = b"", b""

    def _end(self) -> None:
        kind = self._headers.get("content-type", "application/octet-stream")
        data: Source
        if self._spool is not None:
            self._spool.close()
            data, self._spool = Path(self._spool.name), None
        else:
            data = b"".join(self._data)
        self.done.append((kind.split(";")[0].strip().lower(), data))
        self.parts_seen += 1
        self._data, self._held = [], 0
        self.open_part = False

    def close(self) -> None:
        """Remove the temporary file of a part the body ended inside (or an error cut off)."""
        if self._spool is not None:
            self._spool.close()
            Path(self._spool.name).unlink(missing_ok=True)
            self._spool = None

    def feed(self, chunk: bytes) -> list[tuple[str, Source]]:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise Invalid(f"the multipart body is malformed: {exc}") from exc
        out, self.done = self.done, []
        return out


def _store_one(request: Request, content_type: str, data: Source, study_uid: str | None):  # type: ignore[no-untyped-def]
    """Store one STOW-RS part; the Referenced SOP Sequence item, or raise ``Rejected``. A part
    spooled to a file is removed once stored (or refused)."""
    try:
        return _store_part(request, content_type, data, study_uid)
    finally:
        if isinstance(data, Path):
            data.unlink(missing_ok=True)


def _store_part(request: Request, content_type: str, data: Source, study_uid: str | None):  # type: ignore[no-untyped-def]
    _, dicom = catalogue.services(request)
    if content_type != "application/dicom":
        raise Rejected(CANNOT_UNDERSTAND, f"part is {content_type}, not application/dicom")
    checked = check(data, STORAGE_UIDS)
    in_study = str(checked.dataset.StudyInstanceUID)
    if study_uid is not None and in_study != study_uid:
        raise Rejected(
            0xA900,
            f"instance belongs to study {in_study}, not {study_uid}",
            checked.sop_class,
            checked.sop_uid,
        )
    received = dicom.ingest.accept(checked, data, association=None)
    item = Dataset()
    item.ReferencedSOPClassUID = received.sop_class
    item.ReferencedSOPInstanceUID = received.sop_uid
    item.RetrieveURL = (
        f"{catalogue.base(request)}/studies/{received.study_uid}/series/{received.series_uid}"
        f"/instances/{received.sop_uid}"
    )
    return item


async def _receive(  # type: ignore[no-untyped-def]
    request: Request,
    reader: _PartReader,
    limit: int,
    referenced: list[Dataset],
    failed: list[Dataset],
    study_uid: str | None,
):
    """Feed the body to ``reader`` and store each part as soon as it is complete."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(
                f"the upload is larger than {limit} bytes"
                + (
                    f"; {len(referenced)} instance(s) before the limit were stored"
                    if referenced
                    else ""
                )
            )
        parts = reader.feed(chunk)
        try:
            while parts:
                kind, data = parts.pop(0)
                try:
                    referenced.append(
                        await run_in_threadpool(_store_one, request, kind, data, study_uid)
                    )
                except Rejected as exc:
                    log.warning("STOW-RS part %s refused (0x%04X)", exc.sop_uid or "-", exc.status)
                    item = Dataset()
                    if exc.sop_class:
                        item.ReferencedSOPClassUID = exc.sop_class
                    if exc.sop_uid:
                        item.ReferencedSOPInstanceUID = exc.sop_uid
                    item.FailureReason = exc.status
                    failed.append(item)
        finally:  # an error (or a cancelled request) leaves no spooled part behind
            for _, data in parts:
                if isinstance(data, Path):
                    data.unlink(missing_ok=True)


async def _stow(request: Request, study_uid: str | None):  # type: ignore[no-untyped-def]
    """PS3.18 §10.5: store each part as it arrives; answer the Referenced / Failed SOP
    Sequences once every instance is in its ImagingStudy."""
    ctx, dicom = catalogue.services(request)
    content_type = request.headers.get("content-type", "")
    media, options = parse_options_header(content_type)
    if media != b"multipart/related":
        raise UnsupportedMediaType('STOW-RS takes multipart/related; type="application/dicom"')
    if not options.get(b"boundary"):
        raise Invalid("the multipart/related Content-Type has no boundary")
    if study_uid is not None:
        check_uid(study_uid, "Study Instance UID")
    limit = ctx.settings.dicom_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is larger than {limit} bytes")
    reader = _PartReader(options[b"boundary"])
    referenced: list[Dataset] = []
    failed: list[Dataset] = []
    try:
        await _receive(request, reader, limit, referenced, failed, study_uid)
    finally:
        reader.close()
    if reader.open_part:  # the body was cut inside a part: that instance is not stored
        log.warning("STOW-RS body ended inside a part; the part was not stored")
        item = Dataset()
        item.FailureReason = CANNOT_UNDERSTAND
        failed.append(item)
    elif reader.parts_seen == 0:
        raise Invalid("the multipart body has no complete part")
    await run_in_threadpool(dicom.ingest.flush, 60)
    reply = Dataset()
    if study_uid:
        reply.RetrieveURL = f"{catalogue.base(request)}/studies/{study_uid}"
    if referenced:
        reply.ReferencedSOPSequence = referenced
    if failed:
        reply.FailedSOPSequence = failed
    status = 200 if not failed else (202 if referenced else 409)
    return Response(orjson.dumps(reply.to_json_dict()), status_code=status, media_type=DICOM_JSON)


@router.post("/studies")
async def stow(request: Request):  # type: ignore[no-untyped-def]
    return await _stow(request, None)


@router.post("/studies/{study}")
async def stow_study(request: Request, study: str):  # type: ignore[no-untyped-def]
    return await _stow(request, study)
