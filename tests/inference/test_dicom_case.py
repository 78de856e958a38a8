"""The imaging path end to end: dcmtk storescu sends a real chest radiograph (CR) to Hearth's
DICOM listener → ImagingStudy → imaging-review case → its AI analysis Task → `hearth worker` →
an Observation linked to the study, the model Device and the case's order → the case's AI step
completed and the case waiting for the doctor."""

from __future__ import annotations

import time

import httpx
import pytest

from inference.registry import metadata
from tests.dicom import read_header, storescu
from tests.inference.conftest import CHEST_CR, HEAD_CT, run_worker
from tests.servers import database_url, free_port, start_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"imaging-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    port = free_port()
    running = start_server(
        request.param, url, dicom_enabled=True, dicom_port=port, data_dir=tmp / "data",
        dicom_quiet_seconds=3600,  # complete on association release
    )  # fmt: skip
    running.dicom_port = port  # type: ignore[attr-defined]
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    yield running
    running.stop()
    cleanup()


def _wait_for(fn, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out")


def test_storescu_chest_cr_to_case_and_observation(hearth):
    h = read_header(CHEST_CR)
    sent = storescu(hearth.dicom_port, CHEST_CR)
    assert sent.returncode == 0, sent.stderr
    with httpx.Client(base_url=hearth.fhir, headers=hearth.headers, timeout=60) as fhir:
        ident = f"urn:dicom:uid|urn:oid:{h.StudyInstanceUID}"

        def study() -> dict | None:
            entries = fhir.get("/ImagingStudy", params={"identifier": ident}).json().get("entry")
            return entries[0]["resource"] if entries else None

        imaging = _wait_for(study)
        focus = f"ImagingStudy/{imaging['id']}"

        def analysis() -> dict | None:
            found = fhir.get("/Task", params={"focus": focus}).json().get("entry", [])
            ai = [
                e["resource"] for e in found
                if e["resource"]["code"]["coding"][0]["code"] == "chest-xray-pneumonia"
            ]  # fmt: skip
            return ai[0] if ai else None

        task = _wait_for(analysis)
        case_ref = task["partOf"][0]["reference"]
        assert task["status"] == "requested"
        run_worker(hearth)
        task = fhir.get(f"/Task/{task['id']}").json()
        assert task["status"] == "completed", task
        obs_ref = next(
            o["valueReference"]["reference"]
            for o in task["output"]
            if o["type"]["text"] == "result"
        )
        obs = fhir.get(f"/{obs_ref}").json()
        assert obs["derivedFrom"] == [{"reference": focus}]
        assert obs["device"]["reference"] == f"Device/{metadata('pneumonia')['version']}"
        case = fhir.get(f"/{case_ref}").json()
        assert obs["basedOn"] == case["basedOn"]  # the case's order (ServiceRequest)
        assert obs["subject"] == imaging["subject"]
        assert case["businessStatus"]["text"] == "AI_ANALYZED"
        steps = fhir.get("/Task", params={"part-of": case_ref}).json()["entry"]
        ai_step = next(
            s["resource"] for s in steps
            if "ai" in [c["code"] for pt in s["resource"].get("performerType", []) for c in pt["coding"]]
        )  # fmt: skip
        assert ai_step["status"] == "completed"
        assert {"reference": obs_ref} in [o.get("valueReference") for o in ai_step["output"]]
        if obs["interpretation"][0]["coding"][0]["code"] == "IND":  # uncertain: review flagged
            assert obs["meta"]["tag"][0]["code"] == "physician-review-required"


def test_a_head_ct_starts_no_case(hearth):
    h = read_header(HEAD_CT)
    assert storescu(hearth.dicom_port, HEAD_CT).returncode == 0
    with httpx.Client(base_url=hearth.fhir, headers=hearth.headers, timeout=60) as fhir:
        ident = f"urn:dicom:uid|urn:oid:{h.StudyInstanceUID}"
        study = _wait_for(
            lambda: fhir.get("/ImagingStudy", params={"identifier": ident}).json().get("entry")
        )[0]["resource"]
        time.sleep(1.0)
        assert (
            fhir.get("/Task", params={"focus": f"ImagingStudy/{study['id']}"})
            .json()
            .get("entry", [])
            == []
        )
