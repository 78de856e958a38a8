"""WADO-RS (PS3.18 §10.4): retrieve studies, series and instances (multipart/related;
type="application/dicom", transfer-syntax negotiated), their metadata (DICOM JSON, bulk data by
URI) and frames (application/octet-stream)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom import dcmread
from starlette.concurrency import run_in_threadpool

from resources.errors import NotAcceptable, NotFound

from . import catalogue
from .catalogue import DICOM_JSON

router = APIRouter()


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
    catalogue.accepts(request, "application/dicom")
    _, dicom = catalogue.services(request)
    wanted = _wanted_syntax(request)
    pairs = catalogue.instances(catalogue.study(request, study_uid), series_uid, sop_uid)
    parts: list[tuple[str, Path | bytes]] = []
    for _, inst in pairs:
        path = dicom.store.path(inst["uid"])
        if not path.is_file():
            raise NotFound(f"instance {inst['uid']} is listed but its file is missing")
        syntax, data = _as_syntax(path, wanted)
        parts.append((f"application/dicom; transfer-syntax={syntax}", data))
    return catalogue.multipart(parts, "application/dicom")


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
    pairs = catalogue.instances(catalogue.study(request, study_uid), series_uid, sop_uid)
    out = []
    for series, inst in pairs:
        uri = f"{catalogue.base(request)}/studies/{study_uid}/series/{series['uid']}/instances/{inst['uid']}"

        def bulk(elem, uri=uri) -> str:  # type: ignore[no-untyped-def]
            return f"{uri}/bulkdata/{elem.tag:08X}"

        _, dicom = catalogue.services(request)
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


def _frames(request: Request, study: str, series: str, instance: str, frames: str):  # type: ignore[no-untyped-def]
    catalogue.accepts(request, "application/octet-stream")
    ds = catalogue.dataset(request, study, series, instance)
    numbers = catalogue.frame_numbers(frames, catalogue.frame_count(ds))
    parts: list[tuple[str, Path | bytes]] = []
    for n in numbers:
        pixels = catalogue.frame(ds, n)
        little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
        parts.append(("application/octet-stream", little.tobytes()))
    return catalogue.multipart(parts, "application/octet-stream")


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}")
async def retrieve_frames(request: Request, study: str, series: str, instance: str, frames: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_frames, request, study, series, instance, frames)
