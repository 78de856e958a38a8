"""DICOMweb under ``/dicomweb`` (PS3.18), one module per service: STOW-RS (``stow``), QIDO-RS
(``search``), WADO-RS (``retrieve``: instances, metadata, frames) and rendered PNG/JPEG
(``rendered``), all reading the catalogue in ``catalogue``. Bad input gets a STOW-RS failure list
or a 4xx OperationOutcome, never a 500."""

from __future__ import annotations

from fastapi import APIRouter

from . import rendered, retrieve, search, stow

router = APIRouter()
for module in (stow, search, retrieve, rendered):
    router.include_router(module.router)
