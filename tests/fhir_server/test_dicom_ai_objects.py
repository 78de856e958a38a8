"""AI results where radiologists look (issue 19): a chest CR sent by dcmtk storescu is analysed
by `hearth worker`; the same worker stores the result as a Comprehensive SR and the heatmap as a
Secondary Capture in the source study (ImagingStudy, QIDO/WADO show them; dcmtk dsrdump reads
the SR) and pushes both by C-STORE to Orthanc, where they land in the right study. A PACS that is
down fails the attempt, retried, then dead-lettered and listed by `hearth dicom-pending`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pydicom
import pytest

from inference.results import DISCLAIMER
from mappings.dicom.ai_objects import COMPREHENSIVE_SR, SECONDARY_CAPTURE
from tests.dicom import Orthanc, read_header, storescu, tool
from tests.inference.conftest import CHEST_CR, run_worker
from tests.inference.test_dicom_case import _wait_for
from tests.servers import database_url, free_port, start_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"ai-dicom-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    port = free_port()
    running = start_server(
        request.param, url, dicom_enabled=True, dicom_port=port, data_dir=tmp / "data",
        dicom_quiet_seconds=3600,
    )  # fmt: skip
    running.dicom_port = port  # type: ignore[attr-defined]
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    orthanc = Orthanc(tmp / "orthanc", port)
    yield running, orthanc, tmp
    orthanc.stop()
    running.stop()
    cleanup()  # type: ignore[operator]


def _study(fhir: httpx.Client, study_uid: str) -> dict | None:
    found = fhir.get("/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"})
    entries = found.json().get("entry")
    return entries[0]["resource"] if entries else None


def test_the_ai_result_reaches_the_study_and_the_pacs(hearth):
    running, orthanc, tmp = hearth
    h = read_header(CHEST_CR)
    assert storescu(running.dicom_port, CHEST_CR).returncode == 0
    env = {
        "HEARTH_DICOM_DESTINATIONS": f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
        "HEARTH_DICOM_AI_DESTINATIONS": "ORTHANC",
    }
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as fhir:
        imaging = _wait_for(lambda: _study(fhir, h.StudyInstanceUID))
        focus = f"ImagingStudy/{imaging['id']}"
        _wait_for(lambda: fhir.get("/Task", params={"focus": focus}).json().get("entry"))
        done = run_worker(running, env=env)
        assert "exported 1 AI result(s) to DICOM" in done.stdout, done.stdout
        obs = fhir.get("/Observation", params={"derived-from": focus}).json()["entry"][0]
        study = _wait_for(
            lambda: (s := _study(fhir, h.StudyInstanceUID)) and len(s["series"]) == 3 and s
        )
    series = {s["modality"]["code"]: s for s in study["series"]}
    assert set(series) == {"CR", "SR", "OT"}
    sr_uid = series["SR"]["instance"][0]["uid"]
    assert series["SR"]["instance"][0]["sopClass"]["code"] == f"urn:oid:{COMPREHENSIVE_SR}"
    assert series["OT"]["instance"][0]["sopClass"]["code"] == f"urn:oid:{SECONDARY_CAPTURE}"

    # WADO-RS gives the SR back; dcmtk reads it as an SR document of the same study
    wado = httpx.get(
        f"{running.root}/dicomweb/studies/{h.StudyInstanceUID}/series/"
        f"{series['SR']['uid']}/instances/{sr_uid}",
        headers={**running.headers, "Accept": 'multipart/related; type="application/dicom"'},
        timeout=60,
    )
    assert wado.status_code == 200
    boundary = wado.headers["content-type"].split("boundary=")[1].strip('"')
    part = wado.content.split(f"--{boundary}".encode())[1]
    sr_file = tmp / "sr.dcm"
    sr_file.write_bytes(part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0])
    dumped = subprocess.run([tool("dsrdump"), str(sr_file)], capture_output=True, text=True)
    assert dumped.returncode == 0, dumped.stderr
    assert "Comprehensive SR Document" in dumped.stdout
    assert (
        "Algorithm Version" in dumped.stdout and "Verification Flag   : UNVERIFIED" in dumped.stdout
    )
    sr = pydicom.dcmread(sr_file)
    assert sr.StudyInstanceUID == h.StudyInstanceUID and sr.PatientID == h.PatientID
    # TID 1500 Imaging Measurement Report > Imaging Measurements > TID 1501 Measurement Group
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (
        "TID 1500"
        in subprocess.run(
            [tool("dsrdump"), "+Pt", str(sr_file)], capture_output=True, text=True
        ).stdout
    )
    by_name = {i.ConceptNameCodeSequence[0].CodeValue: i for i in sr.ContentSequence}
    assert by_name["121005"].ConceptCodeSequence[0].CodeValue == "121007"  # observer: a device
    image = by_name["111028"].ContentSequence[0].ContentSequence[0]  # the analysed image
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == h.SOPInstanceUID
    group = by_name["126010"].ContentSequence[0]
    assert group.ContentTemplateSequence[0].TemplateIdentifier == "1501"
    items = {i.ConceptNameCodeSequence[0].CodeValue: i for i in group.ContentSequence}
    finding = items["121071"].ConceptCodeSequence[0].CodeMeaning
    value = obs["resource"]["valueCodeableConcept"]
    assert finding in [value.get("text"), *(c.get("display") for c in value.get("coding", []))]
    assert items["111003"].TextValue  # Algorithm Version
    probabilities = [
        float(i.MeasuredValueSequence[0].NumericValue)
        for i in group.ContentSequence
        if i.ValueType == "NUM"
    ]
    expected = [c["valueQuantity"]["value"] for c in obs["resource"]["component"]]
    comments = [i.TextValue for i in by_name["C0034375"].ContentSequence]
    assert DISCLAIMER in comments
    assert probabilities == pytest.approx(expected, abs=1e-4)

    # Orthanc has both, in the source study
    found = httpx.post(
        f"{orthanc.url}/tools/find",
        json={
            "Level": "Instance",
            "Query": {"StudyInstanceUID": h.StudyInstanceUID},
            "Expand": True,
        },
        timeout=30,
    ).json()
    classes = {i["MainDicomTags"]["SOPInstanceUID"] for i in found}
    assert sr_uid in classes and series["OT"]["instance"][0]["uid"] in classes

    # the doctor verifies the result: its export runs again, and a VERIFIED SR (a new instance)
    # is stored in the study and pushed to the PACS
    verified = {**obs["resource"], "status": "final", "performer": [{"display": "Dr Verifier"}]}
    store = running.server.config.app.state.dicom.store

    def verified_srs() -> list[str]:
        study = _study(fhir, h.StudyInstanceUID) or {}
        out = []
        for se in study.get("series", []):
            for i in se["instance"] if se["modality"]["code"] == "SR" else []:
                with store.open(i["uid"]) as f:
                    ds = pydicom.dcmread(f, stop_before_pixels=True)
                if ds.VerificationFlag == "VERIFIED":
                    assert ds.CompletionFlag == "COMPLETE"
                    assert ds.VerifyingObserverSequence[0].VerifyingObserverName == "Dr Verifier"
                    out.append(i["uid"])
        return out

    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as fhir:
        assert verified_srs() == []
        put = fhir.put(f"/Observation/{verified['id']}", json=verified)
        assert put.status_code == 200, put.text
        done = run_worker(running, env=env)
        assert "exported 1 AI result(s) to DICOM" in done.stdout, done.stdout
        (verified_uid,) = _wait_for(verified_srs)
    assert verified_uid != sr_uid
    in_pacs = httpx.post(
        f"{orthanc.url}/tools/find",
        json={"Level": "Instance", "Query": {"SOPInstanceUID": verified_uid}},
        timeout=30,
    ).json()
    assert len(in_pacs) == 1


def test_a_pacs_that_is_down_is_retried_then_dead_lettered(hearth, tmp_path):
    running, _, _ = hearth
    down = free_port()  # nothing listens here
    env = {
        "HEARTH_DICOM_DESTINATIONS": f"DOWNPACS@127.0.0.1:{down}",
        "HEARTH_DICOM_AI_DESTINATIONS": "DOWNPACS",
        "HEARTH_DICOM_AI_MAX_ATTEMPTS": "1",
    }
    # a second study (the same image under new UIDs) and its analysis
    ds = pydicom.dcmread(CHEST_CR)
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    second = tmp_path / "second.dcm"
    ds.save_as(second)
    assert storescu(running.dicom_port, second).returncode == 0
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as fhir:
        imaging = _wait_for(lambda: _study(fhir, ds.StudyInstanceUID))
        focus = f"ImagingStudy/{imaging['id']}"
        _wait_for(lambda: fhir.get("/Task", params={"focus": focus}).json().get("entry"))
        run_worker(running, env=env)
        obs_id = fhir.get("/Observation", params={"derived-from": focus}).json()["entry"][0][
            "resource"
        ]["id"]
        # stored in Hearth all the same (the push is what failed)
        _wait_for(lambda: len((_study(fhir, ds.StudyInstanceUID) or {}).get("series", [])) == 3)
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("hearth")), "dicom-pending"],
        env={**os.environ, "HEARTH_DATABASE_URL": running.database_url,
             "HEARTH_DATA_DIR": str(running.data_dir)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert f"AI result Observation/{obs_id}" in listed.stdout
    assert "DICOM push FAILED after 1 attempts" in listed.stdout and "DOWNPACS" in listed.stdout
