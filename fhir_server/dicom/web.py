"""DICOMweb under ``/dicomweb`` (PS3.18): STOW-RS (§10.5), QIDO-RS (§10.6), WADO-RS (§10.4:
instances, metadata, frames) and rendered PNG/JPEG with windowing (§10.4.1.1.3, §8.3.5).

The catalogue is the ImagingStudy resources the ingest service writes (found by their
``urn:dicom:uid`` identifier) and the instance file store; nothing is indexed twice. Bad input gets
a STOW-RS failure list (Failed SOP Sequence, PS3.18 Table 10.5.3-1) or a 4xx OperationOutcome.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydicom import dcmread
from pydicom.dataset import Dataset
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from mappings.dicom.imaging_study import STUDY_UID_SYSTEM
from resources.errors import Invalid, NotAcceptable, NotFound, TooLarge, UnsupportedMediaType
from resources.instances import check_uid

from . import qido
from .parse import CANNOT_UNDERSTAND, Rejected, check
from .sop_classes import STORAGE_UIDS

router = APIRouter()
log = logging.getLogger("hearth.dicomweb")
DICOM_JSON = "application/dicom+json"


# -- the catalogue ---------------------------------------------------------------------------
def _services(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.context, request.app.state.dicom


def _studies(request: Request, study_uid: str | None = None) -> list[dict]:
    ctx, _ = _services(request)
    if study_uid is not None:
        check_uid(study_uid, "Study Instance UID")
        query = [("identifier", f"{STUDY_UID_SYSTEM}|urn:oid:{study_uid}")]
    else:
        query = [("identifier", f"{STUDY_UID_SYSTEM}|")]
    return [
        s.content
        for s in ctx.repo.read(lambda u: u.read_many(u.match("ImagingStudy", query)))
        if s.content
    ]


def _study(request: Request, study_uid: str) -> dict:
    found = _studies(request, study_uid)
    if not found:
        raise NotFound(f"study {study_uid} is not stored here")
    return found[0]


def _uid_of(study: dict) -> str:
    for ident in study.get("identifier", []):
        if ident.get("system") == STUDY_UID_SYSTEM:
            return ident["value"].removeprefix("urn:oid:")
    raise NotFound("ImagingStudy without a Study Instance UID")


def _series(study: dict, series_uid: str) -> dict:
    for s in study.get("series", []):
        if s["uid"] == series_uid:
            return s
    raise NotFound(f"series {series_uid} is not in study {_uid_of(study)}")


def _instances(study: dict, series_uid: str | None = None, sop_uid: str | None = None):
    """(series, instance) pairs of a study, narrowed to a series / one instance."""
    out = []
    for s in study.get("series", []):
        if series_uid is not None and s["uid"] != series_uid:
            continue
        for i in s.get("instance", []):
            if sop_uid is None or i["uid"] == sop_uid:
                out.append((s, i))
    if (series_uid or sop_uid) and not out:
        raise NotFound(f"no instance {sop_uid or ''} in series {series_uid or ''}".strip())
    return out


def _header(request: Request, sop_uid: str) -> Dataset:
    _, dicom = _services(request)
    with dicom.store.open(sop_uid) as f:
        return dcmread(f, stop_before_pixels=True)


# -- QIDO-RS ---------------------------------------------------------------------------------
def _copy(src: Dataset, dst: Dataset, keys: list[str]) -> None:
    for kw in keys:
        if kw in src:
            dst[kw] = src[kw]


def _study_record(request: Request, study: dict) -> Dataset:
    first = study["series"][0]["instance"][0]["uid"]
    h = _header(request, first)
    rec = Dataset()
    _copy(h, rec, [k for k in qido.STUDY_KEYS if not k.startswith("NumberOf")])
    rec.ModalitiesInStudy = [m["code"] for m in study.get("modality", [])]
    rec.NumberOfStudyRelatedSeries = study.get("numberOfSeries", 0)
    rec.NumberOfStudyRelatedInstances = study.get("numberOfInstances", 0)
    rec.RetrieveURL = f"{_base(request)}/studies/{_uid_of(study)}"
    return rec


def _series_record(request: Request, study: dict, series: dict, study_rec: Dataset) -> Dataset:
    h = _header(request, series["instance"][0]["uid"])
    rec = Dataset()
    rec.update(study_rec)
    _copy(h, rec, [k for k in qido.SERIES_KEYS if not k.startswith("NumberOf")])
    rec.NumberOfSeriesRelatedInstances = series.get("numberOfInstances", 0)
    rec.RetrieveURL = f"{_base(request)}/studies/{_uid_of(study)}/series/{series['uid']}"
    return rec


def _instance_record(request: Request, series_rec: Dataset, sop_uid: str) -> Dataset:
    h = _header(request, sop_uid)
    rec = Dataset()
    rec.update(series_rec)
    _copy(h, rec, qido.INSTANCE_KEYS)
    rec.RetrieveURL = f"{series_rec.RetrieveURL}/instances/{sop_uid}"
    return rec


def _base(request: Request) -> str:
    return request.app.state.context.settings.dicomweb_base


def _search(request: Request, level: str, study_uid: str | None, series_uid: str | None):
    allowed = list(qido.STUDY_KEYS)
    if level in ("series", "instances"):
        allowed += qido.SERIES_KEYS
    if level == "instances":
        allowed += qido.INSTANCE_KEYS
    criteria, offset, limit = qido.parse_query(request.query_params.multi_items(), allowed)
    if (
        study_uid is None
        and "StudyInstanceUID" in criteria
        and "," not in criteria["StudyInstanceUID"]
        and "\\" not in criteria["StudyInstanceUID"]
    ):
        study_uid = criteria["StudyInstanceUID"]
    studies = _studies(request, study_uid) if study_uid else _studies(request)
    if study_uid and not studies:
        raise NotFound(f"study {study_uid} is not stored here")
    records: list[Dataset] = []
    for study in studies:
        if not study.get("series"):
            continue
        srec = _study_record(request, study)
        if level == "studies":
            records.append(srec)
            continue
        for series in study["series"]:
            if series_uid is not None and series["uid"] != series_uid:
                continue
            rec = _series_record(request, study, series, srec)
            if level == "series":
                records.append(rec)
                continue
            for inst in series.get("instance", []):
                records.append(_instance_record(request, rec, inst["uid"]))
    hits = [r for r in records if qido.matches(r, criteria)]
    page = hits[offset : offset + limit]
    if not page:
        return Response(status_code=204)
    body = orjson.dumps([r.to_json_dict() for r in page])
    return Response(body, media_type=DICOM_JSON)


@router.get("/studies")
async def search_studies(request: Request):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_search, request, "studies", None, None)


@router.get("/series")
async def search_all_series(request: Request):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_search, request, "series", None, None)


@router.get("/instances")
async def search_all_instances(request: Request):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_search, request, "instances", None, None)


@router.get("/studies/{study}/series")
async def search_series(request: Request, study: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_search, request, "series", study, None)


@router.get("/studies/{study}/instances")
async def search_study_instances(request: Request, study: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_search, request, "instances", study, None)


@router.get("/studies/{study}/series/{series}/instances")
async def search_instances(request: Request, study: str, series: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_search, request, "instances", study, series)


# -- WADO-RS ---------------------------------------------------------------------------------
def _multipart(parts: list[tuple[str, Path | bytes]], kind: str) -> StreamingResponse:
    """multipart/related (RFC 2387), one part per instance or frame, streamed from disk."""
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for content_type, data in parts:
            yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            if isinstance(data, Path):
                with data.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        yield chunk
            else:
                yield data
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="{kind}"; boundary={boundary}'
    return StreamingResponse(body(), media_type=media)


def _accepts(request: Request, *kinds: str) -> None:
    accept = request.headers.get("accept", "")
    if (
        not accept.strip()
        or "*/*" in accept
        or "multipart/related" in accept
        and any(k in accept for k in kinds)
        or any(k in accept for k in kinds)
    ):
        return
    raise NotAcceptable(f"this resource is available as {', '.join(kinds)}")


EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _wanted_syntax(request: Request) -> str:
    """The transfer syntax asked for (PS3.18 §8.7.3.5.2): the ``transfer-syntax`` parameter of
    the application/dicom media type; ``*`` means as stored; none means Explicit VR Little
    Endian, the default of PS3.18 Table 8.7.3-2."""
    for item in request.headers.get("accept", "").split(","):
        if "application/dicom" not in item:
            continue
        for param in item.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "transfer-syntax":
                return value.strip().strip('"')
        return EXPLICIT_LE
    return EXPLICIT_LE


def _as_syntax(path: Path, wanted: str) -> tuple[str, Path | bytes]:
    """(syntax, data): the stored file as it is, or re-encoded in Explicit VR Little Endian
    (decompressing)."""
    with path.open("rb") as f:
        meta = dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta
    have = str(meta.TransferSyntaxUID)
    if wanted in ("*", have):
        return have, path
    if wanted != EXPLICIT_LE:
        raise NotAcceptable(
            f"instance is {have}; it can be sent as stored (transfer-syntax=*) or as {EXPLICIT_LE}"
        )
    ds = dcmread(path)
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    except Exception as exc:  # no decoder for this syntax
        raise NotAcceptable(
            f"instance is {have} and cannot be converted ({exc}); ask for transfer-syntax=*"
        ) from exc
    return EXPLICIT_LE, out.getvalue()


def _retrieve(request: Request, study_uid: str, series_uid=None, sop_uid=None):  # type: ignore[no-untyped-def]
    _accepts(request, "application/dicom")
    _, dicom = _services(request)
    wanted = _wanted_syntax(request)
    pairs = _instances(_study(request, study_uid), series_uid, sop_uid)
    parts: list[tuple[str, Path | bytes]] = []
    for _, inst in pairs:
        path = dicom.store.path(inst["uid"])
        if not path.is_file():
            raise NotFound(f"instance {inst['uid']} is listed but its file is missing")
        syntax, data = _as_syntax(path, wanted)
        parts.append((f"application/dicom; transfer-syntax={syntax}", data))
    return _multipart(parts, "application/dicom")


@router.get("/studies/{study}")
async def retrieve_study(request: Request, study: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_retrieve, request, study)


@router.get("/studies/{study}/series/{series}")
async def retrieve_series(request: Request, study: str, series: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_retrieve, request, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}")
async def retrieve_instance(request: Request, study: str, series: str, instance: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_retrieve, request, study, series, instance)


def _metadata(request: Request, study_uid: str, series_uid=None, sop_uid=None):  # type: ignore[no-untyped-def]
    pairs = _instances(_study(request, study_uid), series_uid, sop_uid)
    out = []
    for series, inst in pairs:
        uri = f"{_base(request)}/studies/{study_uid}/series/{series['uid']}/instances/{inst['uid']}"

        def bulk(elem, uri=uri) -> str:  # type: ignore[no-untyped-def]
            return f"{uri}/bulkdata/{elem.tag:08X}"

        _, dicom = _services(request)
        with dicom.store.open(inst["uid"]) as f:
            ds = dcmread(f, defer_size=1024)
        out.append(ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk))
    return Response(orjson.dumps(out), media_type=DICOM_JSON)


@router.get("/studies/{study}/metadata")
async def study_metadata(request: Request, study: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_metadata, request, study)


@router.get("/studies/{study}/series/{series}/metadata")
async def series_metadata(request: Request, study: str, series: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_metadata, request, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
async def instance_metadata(request: Request, study: str, series: str, instance: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_metadata, request, study, series, instance)


def _dataset(request: Request, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
    _instances(_study(request, study_uid), series_uid, sop_uid)
    _, dicom = _services(request)
    with dicom.store.open(sop_uid) as f:
        return dcmread(f)


def _frame_numbers(frames: str, count: int) -> list[int]:
    try:
        numbers = [int(n) for n in frames.split(",")]
    except ValueError:
        raise Invalid(f"frame list {frames!r} is not comma-separated numbers") from None
    bad = [n for n in numbers if not 1 <= n <= count]
    if bad:
        raise NotFound(f"frame(s) {bad} out of range 1..{count}")
    return numbers


def _pixels(ds: Dataset) -> np.ndarray:
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # no decoder for the transfer syntax, corrupt pixel data
        raise NotAcceptable(f"pixel data cannot be decoded: {exc}") from exc
    count = int(ds.get("NumberOfFrames", 1) or 1)
    return arr if count > 1 else arr[np.newaxis, ...]


def _frames(request: Request, study: str, series: str, instance: str, frames: str):  # type: ignore[no-untyped-def]
    _accepts(request, "application/octet-stream")
    ds = _dataset(request, study, series, instance)
    arr = _pixels(ds)
    numbers = _frame_numbers(frames, arr.shape[0])
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return _multipart(
        [("application/octet-stream", little[n - 1].tobytes()) for n in numbers],
        "application/octet-stream",
    )


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}")
async def retrieve_frames(request: Request, study: str, series: str, instance: str, frames: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_frames, request, study, series, instance, frames)


# -- rendered ------------------------------------------------------------------------------
def _render(request: Request, study: str, series: str, instance: str, frame: int = 1):  # type: ignore[no-untyped-def]
    from PIL import Image
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    accept = request.headers.get("accept", "image/png")
    kind = "image/jpeg" if "image/jpeg" in accept and "image/png" not in accept else "image/png"
    if not any(k in accept for k in ("image/png", "image/jpeg", "image/*", "*/*")) and accept:
        raise NotAcceptable("rendered images are image/png or image/jpeg")
    ds = _dataset(request, study, series, instance)
    arr = _pixels(ds)
    (n,) = _frame_numbers(str(frame), arr.shape[0])
    img = arr[n - 1]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR" and img.ndim == 2:
        img = apply_color_lut(img, ds)  # RGB, 8 or 16 bits per channel
        if img.dtype != np.uint8:
            img = (img / 65535 * 255).astype(np.uint8) if img.max() > 255 else img.astype(np.uint8)
    if img.ndim == 2:
        window = request.query_params.get("window")
        values = apply_modality_lut(img, ds).astype(np.float64)
        if window:
            try:
                center, width, *function = window.split(",")
                center, width = float(center), float(width)
            except ValueError:
                raise Invalid("window is center,width[,function]") from None
            if width <= 0:
                raise Invalid("window width must be positive")
            lo, hi = center - width / 2, center + width / 2
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            values = apply_voi_lut(values, ds).astype(np.float64)
            lo, hi = float(values.min()), float(values.max())
        else:
            lo, hi = float(values.min()), float(values.max())
        scaled = np.clip((values - lo) / max(hi - lo, 1e-9), 0, 1) * 255
        if photometric == "MONOCHROME1":
            scaled = 255 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    else:
        if arr.dtype != np.uint8:
            img = (img / max(float(img.max()), 1) * 255).astype(np.uint8)
        image = Image.fromarray(img[..., :3], mode="RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG" if kind == "image/jpeg" else "PNG")
    return Response(out.getvalue(), media_type=kind)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
async def rendered(request: Request, study: str, series: str, instance: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_render, request, study, series, instance)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered")
async def rendered_frame(request: Request, study: str, series: str, instance: str, frame: str):  # type: ignore[no-untyped-def]
    if not frame.isdigit():
        raise Invalid("a rendered frame is one frame number")
    return await run_in_threadpool(_render, request, study, series, instance, int(frame))


# -- STOW-RS ---------------------------------------------------------------------------------
class _PartReader:
    """Streams a multipart/related body (RFC 2387) with python-multipart, yielding each part
    (content type, bytes) as soon as it is complete: memory holds one part, not the upload."""

    def __init__(self, boundary: bytes) -> None:
        self.done: list[tuple[str, bytes]] = []
        self._data: list[bytes] = []
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
        self._data, self._headers = [], {}
        self.open_part = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._data.append(data[start:end])

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
        self.done.append((kind.split(";")[0].strip().lower(), b"".join(self._data)))
        self.parts_seen += 1
        self._data = []
        self.open_part = False

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise Invalid(f"the multipart body is malformed: {exc}") from exc
        out, self.done = self.done, []
        return out


def _store_one(request: Request, content_type: str, data: bytes, study_uid: str | None):  # type: ignore[no-untyped-def]
    """Store one STOW-RS part; the Referenced SOP Sequence item, or raise ``Rejected``."""
    _, dicom = _services(request)
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
        f"{_base(request)}/studies/{received.study_uid}/series/{received.series_uid}"
        f"/instances/{received.sop_uid}"
    )
    return item


async def _stow(request: Request, study_uid: str | None):  # type: ignore[no-untyped-def]
    """PS3.18 §10.5: store each part as it arrives; answer the Referenced / Failed SOP
    Sequences once every instance is in its ImagingStudy."""
    ctx, dicom = _services(request)
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
    referenced, failed = [], []
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
        for kind, data in reader.feed(chunk):
            try:
                referenced.append(
                    await run_in_threadpool(_store_one, request, kind, data, study_uid)
                )
            except Rejected as exc:
                log.warning("STOW-RS part refused (0x%04X): %s", exc.status, exc.reason)
                item = Dataset()
                if exc.sop_class:
                    item.ReferencedSOPClassUID = exc.sop_class
                if exc.sop_uid:
                    item.ReferencedSOPInstanceUID = exc.sop_uid
                item.FailureReason = exc.status
                failed.append(item)
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
        reply.RetrieveURL = f"{_base(request)}/studies/{study_uid}"
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
