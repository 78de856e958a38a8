"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances, answered as
application/dicom+json; matching rules in ``qido``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool

from resources.errors import NotFound

from . import catalogue, qido
from .catalogue import DICOM_JSON

router = APIRouter()


def _copy(src: Dataset, dst: Dataset, keys: list[str]) -> None:
    for kw in keys:
        if kw in src:
            dst[kw] = src[kw]


def _study_record(request: Request, study: dict) -> Dataset:
    first = study["series"][0]["instance"][0]["uid"]
    h = catalogue.header(request, first)
    rec = Dataset()
    _copy(h, rec, [k for k in qido.STUDY_KEYS if not k.startswith("NumberOf")])
    rec.ModalitiesInStudy = [m["code"] for m in study.get("modality", [])]
    rec.NumberOfStudyRelatedSeries = study.get("numberOfSeries", 0)
    rec.NumberOfStudyRelatedInstances = study.get("numberOfInstances", 0)
    rec.RetrieveURL = f"{catalogue.base(request)}/studies/{catalogue.uid_of(study)}"
    return rec


def _series_record(request: Request, study: dict, series: dict, study_rec: Dataset) -> Dataset:
    h = catalogue.header(request, series["instance"][0]["uid"])
    rec = Dataset()
    rec.update(study_rec)
    _copy(h, rec, [k for k in qido.SERIES_KEYS if not k.startswith("NumberOf")])
    rec.NumberOfSeriesRelatedInstances = series.get("numberOfInstances", 0)
    rec.RetrieveURL = (
        f"{catalogue.base(request)}/studies/{catalogue.uid_of(study)}/series/{series['uid']}"
    )
    return rec


def _instance_record(request: Request, series_rec: Dataset, sop_uid: str) -> Dataset:
    h = catalogue.header(request, sop_uid)
    rec = Dataset()
    rec.update(series_rec)
    _copy(h, rec, qido.INSTANCE_KEYS)
    rec.RetrieveURL = f"{series_rec.RetrieveURL}/instances/{sop_uid}"
    return rec


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
    studies = catalogue.studies(request, study_uid) if study_uid else catalogue.studies(request)
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
