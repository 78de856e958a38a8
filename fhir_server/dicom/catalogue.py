"""What DICOMweb serves from: the ImagingStudy resources the ingest service writes (found by their
``urn:dicom:uid`` identifier) and the instance file store — nothing is indexed twice — plus the
helpers every DICOMweb module shares (multipart/related writer, Accept check, pixel decoding)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
from fastapi import Request
from fastapi.responses import StreamingResponse
from pydicom import dcmread
from pydicom.dataset import Dataset

from mappings.dicom.imaging_study import STUDY_UID_SYSTEM
from resources.errors import Invalid, NotAcceptable, NotFound
from resources.storage.instances import check_uid

DICOM_JSON = "application/dicom+json"


def services(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.context, request.app.state.dicom


def studies(request: Request, study_uid: str | None = None) -> list[dict]:
    ctx, _ = services(request)
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


def study(request: Request, study_uid: str) -> dict:
    found = studies(request, study_uid)
    if not found:
        raise NotFound(f"study {study_uid} is not stored here")
    return found[0]


def uid_of(study: dict) -> str:
    for ident in study.get("identifier", []):
        if ident.get("system") == STUDY_UID_SYSTEM:
            return ident["value"].removeprefix("urn:oid:")
    raise NotFound("ImagingStudy without a Study Instance UID")


def instances(study: dict, series_uid: str | None = None, sop_uid: str | None = None):
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


def header(request: Request, sop_uid: str) -> Dataset:
    _, dicom = services(request)
    with dicom.store.open(sop_uid) as f:
        return dcmread(f, stop_before_pixels=True)


def base(request: Request) -> str:
    return request.app.state.context.settings.dicomweb_base


def dataset(request: Request, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
    instances(study(request, study_uid), series_uid, sop_uid)
    _, dicom = services(request)
    with dicom.store.open(sop_uid) as f:
        return dcmread(f)


def frame_numbers(frames: str, count: int) -> list[int]:
    try:
        numbers = [int(n) for n in frames.split(",")]
    except ValueError:
        raise Invalid(f"frame list {frames!r} is not comma-separated numbers") from None
    bad = [n for n in numbers if not 1 <= n <= count]
    if bad:
        raise NotFound(f"frame(s) {bad} out of range 1..{count}")
    return numbers


def frame_count(ds: Dataset) -> int:
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def frame(ds: Dataset, number: int) -> np.ndarray:
    """Frame ``number`` (1-based), decoding only that frame (pydicom.pixels, pylibjpeg)."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, index=number - 1 if frame_count(ds) > 1 else None)
    except NotFound:
        raise
    except Exception as exc:  # no decoder for the transfer syntax, corrupt pixel data
        raise NotAcceptable(f"pixel data cannot be decoded: {exc}") from exc


Part = bytes | Callable[[], BinaryIO]  # the bytes, or how to open them when the part is sent


def multipart(parts: list[tuple[str, Part]], kind: str) -> StreamingResponse:
    """multipart/related (RFC 2387), one part per instance or frame; a part given as an opener
    is streamed from the store when its turn comes (one instance open at a time)."""
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for content_type, data in parts:
            yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            if callable(data):
                with data() as f:
                    while chunk := f.read(1 << 20):
                        yield chunk
            else:
                yield data
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="{kind}"; boundary={boundary}'
    return StreamingResponse(body(), media_type=media)


def accepts(request: Request, *kinds: str) -> None:
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
