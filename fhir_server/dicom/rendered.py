"""Rendered images (PS3.18 §10.4.1.1.3, §8.3.5): an instance or frame as image/png or
image/jpeg for the browser, with the header's VOI LUT or a ``window=center,width`` override."""

from __future__ import annotations

import io

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from resources.errors import Invalid, NotAcceptable

from . import catalogue

router = APIRouter()


def _render(request: Request, study: str, series: str, instance: str, frame: int = 1):  # type: ignore[no-untyped-def]
    from PIL import Image
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    accept = request.headers.get("accept", "image/png")
    kind = "image/jpeg" if "image/jpeg" in accept and "image/png" not in accept else "image/png"
    if not any(k in accept for k in ("image/png", "image/jpeg", "image/*", "*/*")) and accept:
        raise NotAcceptable("rendered images are image/png or image/jpeg")
    ds = catalogue.dataset(request, study, series, instance)
    (n,) = catalogue.frame_numbers(str(frame), catalogue.frame_count(ds))
    img = catalogue.frame(ds, n)
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
                center_text, width_text, *function = window.split(",")
                center, width = float(center_text), float(width_text)
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
        if img.dtype != np.uint8:
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
