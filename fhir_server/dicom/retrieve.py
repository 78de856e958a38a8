"""WADO-RS (PS3.18 §10.4): retrieve studies, series and instances (multipart/related;
type="application/dicom", transfer-syntax negotiated), their metadata (DICOM JSON, bulk data by
URI) and frames (application/octet-stream)."""

from __future__ import annotations

from functools import partial

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom import dcmread
from starlette.concurrency import run_in_threadpool

from resources.errors import NotAcceptable, NotFound
from resources.storage.instances import InstanceStore

from . import catalogue, transcode
from .catalogue import DICOM_JSON, Part

router = APIRouter()


def _as_syntax(store: InstanceStore, uid: str, accepted: list[str]) -> tuple[str, Part]:
    """(syntax, data): the stored instance as it is when its syntax is accepted (streamed from
    the store when its part is sent), else the same instance (same UIDs, same pixels)
    transcoded to the first accepted syntax that works (``transcode``); 406 when none does."""
    with store.open(uid) as f:
        have = transcode.stored_syntax(f)
        chosen = transcode.choose(accepted, have)
        if chosen == have:
            return have, partial(store.open, uid)
        problems = []
        for syntax in [s for s in accepted if transcode.can_encode(s)]:
            try:
                f.seek(0)
                return syntax, transcode.transcode(f, syntax)
            except transcode.CannotTranscode as exc:
                problems.append(str(exc))
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise NotAcceptable(
        f"instance is {have} and cannot be sent as {', '.join(accepted)}{detail}; "
        f"it can be sent as stored (transfer-syntax=*) or as {transcode.DEFAULT}"
    )


def _retrieve(request: Request, study_uid: str, series_uid=None, sop_uid=None):  # type: ignore[no-untyped-def]
    catalogue.accepts(request, "application/dicom")
    _, dicom = catalogue.services(request)
    accepted = transcode.accepted_syntaxes(request.headers.get("accept", ""))
    pairs = catalogue.instances(catalogue.study(request, study_uid), series_uid, sop_uid)
    parts: list[tuple[str, Part]] = []
    for _, inst in pairs:
        if not dicom.store.exists(inst["uid"]):
            raise NotFound(f"instance {inst['uid']} is listed but its file is missing")
        syntax, data = _as_syntax(dicom.store, inst["uid"], accepted)
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
    parts: list[tuple[str, Part]] = []
    for n in numbers:
        pixels = catalogue.frame(ds, n)
        little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
        parts.append(("application/octet-stream", little.tobytes()))
    return catalogue.multipart(parts, "application/octet-stream")


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}")
async def retrieve_frames(request: Request, study: str, series: str, instance: str, frames: str):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(_frames, request, study, series, instance, frames)
