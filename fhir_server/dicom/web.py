"""DICOMweb under ``/dicomweb`` (PS3.18), one module per service: STOW-RS (``stow``), QIDO-RS
(``search``), WADO-RS (``retrieve``: instances, metadata, frames) and rendered PNG/JPEG
(``rendered``), all reading the catalogue in ``catalogue``. Bad input gets a STOW-RS failure list
or a 4xx OperationOutcome, never a 500.

Every DICOMweb request needs a SMART access token (``dicomweb_access``): reading needs read
access to every ImagingStudy (``user/`` or ``system/`` scope), storing needs create access.
Patient-context tokens are refused: DICOMweb has no patient filter, so it would leak other
patients' studies; such apps use the FHIR ImagingStudy and its Binary/Media instead."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import enforce
from fhir_server.auth.tokens import bearer_access
from resources.errors import Forbidden

from . import rendered, retrieve, search, stow


async def dicomweb_access(request: Request) -> None:
    """401 without a valid token; 403 unless its scopes cover every ImagingStudy."""
    ctx = request.app.state.context
    store = request.app.state.auth.store
    access = await run_in_threadpool(
        bearer_access, store, ctx.settings, request.headers.get("authorization")
    )
    perm = "c" if request.method == "POST" else "r"
    if enforce.require(access, "ImagingStudy", perm) != "all":
        raise Forbidden("DICOMweb needs user- or system-level ImagingStudy access")


router = APIRouter(dependencies=[Depends(dicomweb_access)])
for module in (stow, search, retrieve, rendered):
    router.include_router(module.router)
