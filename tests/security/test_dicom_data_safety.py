"""DICOM data safety (issue 14; docs/dicom.md "Data safety"), on SQLite and PostgreSQL: success
only for what is durable and will reach FHIR. An instance whose Patient or ImagingStudy cannot be
mapped (a NUL in Patient ID) is refused 0xC000 with an Error Comment over C-STORE and listed in
the Failed SOP Sequence over STOW-RS, while the study's other instances reach their ImagingStudy;
an acknowledged instance whose writes keep failing is dead-lettered in the pending journal
(`hearth dicom-pending` shows it) and `hearth dicom-replay` brings it into FHIR; one acknowledged
just before a crash is written at the next start."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import generate_uid
from pynetdicom import AE

from fhir_server.dicom.sop_classes import STORAGE
from fhir_server.runtime.app import build_context
from fhir_server.runtime.settings import Settings
from mappings.dicom.imaging_study import study_search
from resources.storage.instances import InstanceStore
from tests.dicom import BACKENDS, HTTP, echoscu, sample_files
from tests.servers import database_url, free_port
from tests.shared import ROOT

HANG_GUARD = 120.0
NUL_ID = "PAT\x00123"


def _instances(study_uid: str, patient_ids: list[str]) -> list[pydicom.Dataset]:
    """New instances of one study (copies of the small CT sample), one per patient ID given."""
    out = []
    series = generate_uid()
    for k, pid in enumerate(patient_ids):
        ds = pydicom.dcmread(sample_files()[3])
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.PatientID = pid
        out.append(ds)
    return out


def _part10(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _c_store(port: int, datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """C-STORE each dataset on one association (pynetdicom as the sending modality); the
    status data sets, in order."""
    scu = AE(ae_title="MODALITY")
    for sop in {str(ds.SOPClassUID) for ds in datasets}:
        assert sop in STORAGE
        scu.add_requested_context(sop, str(datasets[0].file_meta.TransferSyntaxUID))
    assoc = scu.associate("127.0.0.1", port, ae_title="HEARTH")
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()


def _studies(dicom_hearth, study_uid: str) -> list[dict]:  # type: ignore[no-untyped-def]
    bundle = HTTP.get(
        f"{dicom_hearth.fhir}/ImagingStudy",
        params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"},
    ).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_unmappable_instance_is_refused_and_the_rest_reach_fhir(dicom_hearth) -> None:  # type: ignore[no-untyped-def]
    study_uid = generate_uid()
    first, *rest = _instances(study_uid, [NUL_ID, "PAT123", "PAT123"])
    statuses = _c_store(dicom_hearth.dicom_port, [first, *rest])
    assert statuses[0].Status == 0xC000
    assert "control character" in statuses[0].ErrorComment
    assert [s.Status for s in statuses[1:]] == [0x0000, 0x0000]
    assert not dicom_hearth.store.exists(str(first.SOPInstanceUID))  # refused: nothing kept
    study = dicom_hearth.study(study_uid)
    assert study["numberOfInstances"] == 2
    uids = {i["uid"] for s in study["series"] for i in s["instance"]}
    assert uids == {str(ds.SOPInstanceUID) for ds in rest}
    assert study_uid not in dicom_hearth.store.pending()  # everything acknowledged is in FHIR


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    return body + f"--{boundary}--\r\n".encode(), (
        f'multipart/related; type="application/dicom"; boundary={boundary}'
    )


def test_stow_lists_an_unmappable_instance_as_failed(dicom_hearth) -> None:  # type: ignore[no-untyped-def]
    study_uid = generate_uid()
    bad, good = _instances(study_uid, [NUL_ID, "PAT456"])
    body, kind = _multipart([_part10(bad), _part10(good)])
    r = HTTP.post(f"{dicom_hearth.dicomweb}/studies", content=body, headers={"Content-Type": kind})
    assert r.status_code == 202, r.text  # PS3.18 10.5.3: some stored, some failed
    reply = pydicom.Dataset.from_json(r.json())
    (failed,) = reply.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == bad.SOPInstanceUID
    assert failed.FailureReason == 0xC000
    assert [i.ReferencedSOPInstanceUID for i in reply.ReferencedSOPSequence] == [
        good.SOPInstanceUID
    ]
    assert dicom_hearth.study(study_uid)["numberOfInstances"] == 1
    alone, kind = _multipart([_part10(_instances(generate_uid(), [NUL_ID])[0])])
    r = HTTP.post(f"{dicom_hearth.dicomweb}/studies", content=alone, headers={"Content-Type": kind})
    assert r.status_code == 409, r.text  # nothing stored
    assert pydicom.Dataset.from_json(r.json()).FailedSOPSequence[0].FailureReason == 0xC000


def _refuse_imaging_studies(url: str, on: bool) -> None:
    """What a broken database does to the ingest: every ImagingStudy row is refused (a trigger,
    as an operator's mistake or a full tablespace would)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if url.startswith("sqlite"):
                if on:
                    conn.exec_driver_sql(
                        "CREATE TRIGGER refuse_study BEFORE INSERT ON resource "
                        "WHEN NEW.res_type = 'ImagingStudy' BEGIN "
                        "SELECT RAISE(ABORT, 'ImagingStudy refused'); END"
                    )
                else:
                    conn.exec_driver_sql("DROP TRIGGER refuse_study")
            elif on:
                conn.exec_driver_sql(
                    "CREATE FUNCTION refuse_study() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.res_type = 'ImagingStudy' THEN "
                    "RAISE EXCEPTION 'ImagingStudy refused'; END IF; RETURN NEW; END $$"
                )
                conn.exec_driver_sql(
                    "CREATE TRIGGER refuse_study BEFORE INSERT ON resource "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_study()"
                )
            else:
                conn.exec_driver_sql("DROP TRIGGER refuse_study ON resource")
                conn.exec_driver_sql("DROP FUNCTION refuse_study()")
    finally:
        engine.dispose()


def _hearth(dicom_hearth, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HEARTH_DATABASE_URL": dicom_hearth.running.database_url,
        "HEARTH_DATA_DIR": str(dicom_hearth.store.root.parent),
        "HEARTH_BASE_URL": dicom_hearth.running.root,
        "HEARTH_AI_TRIGGERS": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_acknowledged_instance_is_dead_lettered_then_replayed(dicom_hearth) -> None:  # type: ignore[no-untyped-def]
    url = dicom_hearth.running.database_url
    study_uid = generate_uid()
    (ds,) = _instances(study_uid, ["PAT789"])
    _refuse_imaging_studies(url, on=True)
    try:
        (status,) = _c_store(dicom_hearth.dicom_port, [ds])
        assert status.Status == 0x0000  # mappable and on disk: the sender may delete its copy
        deadline = time.monotonic() + HANG_GUARD
        while study_uid not in dicom_hearth.store.failed():  # the writer gave up...
            assert time.monotonic() < deadline, "the study was never dead-lettered"
            time.sleep(0.1)
        assert dicom_hearth.store.pending()[study_uid] == [str(ds.SOPInstanceUID)]  # ...kept it
        listed = _hearth(dicom_hearth, "dicom-pending")
        assert listed.returncode == 0, listed.stderr
        assert study_uid in listed.stdout and "FAILED" in listed.stdout
        assert _studies(dicom_hearth, study_uid) == []
    finally:
        _refuse_imaging_studies(url, on=False)
    replay = _hearth(dicom_hearth, "dicom-replay", "--study", study_uid)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    (study,) = _studies(dicom_hearth, study_uid)
    assert study["numberOfInstances"] == 1
    assert study_uid not in dicom_hearth.store.pending()
    assert study_uid not in dicom_hearth.store.failed()


@pytest.mark.parametrize("backend", BACKENDS)
def test_acknowledged_instance_survives_a_crash(backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`hearth dicom` killed (SIGKILL) after acknowledging an instance it could not yet write:
    the next start writes it from the journal, with no operator action."""
    url, cleanup = database_url(backend, tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HEARTH_DATABASE_URL": url,
        "HEARTH_DATA_DIR": str(tmp_path / "data"),
        "HEARTH_DICOM_PORT": str(port),
        "HEARTH_AI_TRIGGERS": "false",
    }
    run = [sys.executable, "-m", "fhir_server.cli", "dicom"]
    store = InstanceStore(tmp_path / "data")
    study_uid = generate_uid()
    (ds,) = _instances(study_uid, ["PAT321"])
    proc = None
    try:
        _refuse_imaging_studies(url, on=True)  # nothing reaches FHIR before the crash
        proc = subprocess.Popen(
            run, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _until(lambda: echoscu(port).returncode == 0)
        (status,) = _c_store(port, [ds])
        assert status.Status == 0x0000
        proc.kill()
        proc.wait(timeout=30)
        assert store.pending() == {study_uid: [str(ds.SOPInstanceUID)]}
        _refuse_imaging_studies(url, on=False)
        proc = subprocess.Popen(
            run, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _until(lambda: not store.pending())
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    ctx = build_context(Settings(database_url=url))
    try:
        stored = ctx.repo.read(
            lambda u: u.read_many(u.match("ImagingStudy", study_search(study_uid)))
        )
    finally:
        ctx.repo.engine.dispose()
        cleanup()
    assert [s.content["numberOfInstances"] for s in stored] == [1]


def _until(cond) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + HANG_GUARD
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
