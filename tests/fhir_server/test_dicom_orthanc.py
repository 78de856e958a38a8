"""Orthanc (Debian) as the hospital PACS: it forwards a study to Hearth through its REST API
(``/modalities/hearth/store``, a real C-STORE association), and its DICOMweb plugin reads the
study back from Hearth's WADO-RS/QIDO-RS. On SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.dicom import Orthanc, read_header, sample_files
from tests.fhir_server.test_dicom_scp import check_patient, check_study_against_headers


def test_orthanc_forwards_studies_to_hearth(dicom_hearth, tmp_path):
    orthanc = Orthanc(
        tmp_path / "orthanc",
        dicom_hearth.dicom_port,
        dicom_hearth.dicomweb,
        dicom_hearth.running.headers,
    )
    events: list[str] = []
    dicom_hearth.ingest.on_study_complete.append(events.append)
    try:
        studies = {}
        for path in sample_files():
            up = orthanc.upload(path)
            studies[up["ParentStudy"]] = path
        echo = httpx.post(f"{orthanc.url}/modalities/hearth/echo", json={}, timeout=30)
        assert echo.status_code == 200, echo.text
        for orthanc_id, path in studies.items():
            r = httpx.post(
                f"{orthanc.url}/modalities/hearth/store",
                json={"Resources": [orthanc_id], "Synchronous": True},
                timeout=120,
            )
            assert r.status_code == 200, r.text
            h = read_header(path)
            study = dicom_hearth.study(str(h.StudyInstanceUID))
            check_study_against_headers(study, [h])
            check_patient(dicom_hearth.fhir, study, h)
        assert dicom_hearth.ingest.flush()
        # one association per store job; its release completes the study, once each
        import time

        deadline = time.monotonic() + 30
        while len(set(events)) < len(studies) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(events) == len(set(events)) == len(studies)

        # Orthanc's DICOMweb client asks Hearth's QIDO-RS, then pulls the CT with WADO-RS
        ct = read_header(sample_files()[1])
        qido = httpx.post(
            f"{orthanc.url}/dicom-web/servers/hearth/qido",
            json={"Uri": "/studies", "Arguments": {"PatientID": str(ct.PatientID)}},
            timeout=60,
        )
        assert qido.status_code == 200, qido.text
        # (Orthanc re-renders the answer in its own JSON: tag → {Name, vr, Value})
        found = [r["0020000D"]["Value"] for r in qido.json()]
        assert found == [str(ct.StudyInstanceUID)]
        ct_orthanc_id = next(k for k, p in studies.items() if p == sample_files()[1])
        assert httpx.delete(f"{orthanc.url}/studies/{ct_orthanc_id}").status_code == 200
        pulled = httpx.post(
            f"{orthanc.url}/dicom-web/servers/hearth/retrieve",
            json={"Resources": [{"Study": str(ct.StudyInstanceUID)}], "Synchronous": True},
            timeout=120,
        )
        assert pulled.status_code == 200, pulled.text
        back = httpx.get(f"{orthanc.url}/studies/{ct_orthanc_id}", timeout=30)
        assert back.status_code == 200, back.text
        instances = httpx.get(f"{orthanc.url}/studies/{ct_orthanc_id}/instances").json()
        tags = httpx.get(f"{orthanc.url}/instances/{instances[0]['ID']}/simplified-tags").json()
        assert tags["SOPInstanceUID"] == str(ct.SOPInstanceUID)
    finally:
        dicom_hearth.ingest.on_study_complete.remove(events.append)
        orthanc.stop()
