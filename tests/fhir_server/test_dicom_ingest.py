"""The ingest service on SQLite and PostgreSQL: completion after the quiet period (one event per
arrival of new instances), two ingesters racing on one study, and ``hearth dicom``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time

import httpx
import pydicom
from pydicom.uid import generate_uid

from fhir_server.dicom.ingest import Ingest
from resources.storage.instances import InstanceStore
from tests.dicom import HTTP, echoscu, read_header, sample_files, storescu
from tests.servers import free_port, system_token
from tests.shared import ROOT


def _copies(n: int, study_uid: str, series_uid: str | None = None) -> list[bytes]:
    """``n`` copies of the CT sample as new instances of one study."""
    base = pydicom.dcmread(sample_files()[1])
    out = []
    for k in range(n):
        base.StudyInstanceUID = study_uid
        base.SeriesInstanceUID = series_uid or generate_uid()
        base.SOPInstanceUID = generate_uid()
        base.InstanceNumber = k + 1
        base.file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
        buf = io.BytesIO()
        base.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def _wait(cond, timeout=30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_quiet_period_completes_once_per_new_arrival(dicom_hearth, tmp_path):
    repo = dicom_hearth.app.state.context.repo
    ingest = Ingest(
        repo,
        InstanceStore(tmp_path),
        dicomweb_base=dicom_hearth.dicomweb,
        quiet_seconds=1.5,  # longer than the gaps between the sends below, even on a busy box
        complete_on_release=False,
    )
    events: list[str] = []
    ingest.on_study_complete.append(events.append)
    ingest.start()
    try:
        study_uid = generate_uid()
        first = _copies(3, study_uid)
        for data in first:
            ingest.receive(data, association="a")
        ingest.association_released("a")  # not a completion signal in this configuration
        assert ingest.flush()
        _wait(lambda: events)
        time.sleep(2.0)
        assert len(events) == 1 and events[0] == ingest.study_id(study_uid)
        ingest.receive(first[0])  # a re-send: nothing new, no event
        time.sleep(2.0)
        assert len(events) == 1
        ingest.receive(_copies(1, study_uid)[0])  # new instance: one more event, same study
        _wait(lambda: len(events) == 2)
        time.sleep(2.0)
        assert events == [events[0]] * 2
        study = HTTP.get(f"{dicom_hearth.fhir}/ImagingStudy/{events[0]}").json()
        assert study["numberOfInstances"] == 4 and study["numberOfSeries"] == 4
    finally:
        ingest.stop()


def test_two_ingesters_race_on_one_study(dicom_hearth, tmp_path):
    """Two processes' worth of ingest writing one study at once: one ImagingStudy, nothing lost."""
    repo = dicom_hearth.app.state.context.repo
    ingesters = [
        Ingest(repo, InstanceStore(tmp_path), dicomweb_base="http://x/dicomweb", batch_delay=0)
        for _ in range(2)
    ]
    for i in ingesters:
        i.start()
    try:
        study_uid, series_uid = generate_uid(), generate_uid()
        data = _copies(16, study_uid, series_uid)

        def send(ingest, items):  # type: ignore[no-untyped-def]
            for d in items:
                ingest.receive(d)

        threads = [
            threading.Thread(target=send, args=(ingesters[0], data[0::2])),
            threading.Thread(target=send, args=(ingesters[1], data[1::2])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(i.flush() for i in ingesters)
        bundle = HTTP.get(
            f"{dicom_hearth.fhir}/ImagingStudy",
            params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"},
        ).json()
        assert len(bundle["entry"]) == 1
        study = bundle["entry"][0]["resource"]
        assert study["numberOfInstances"] == 16
        assert [i["number"] for i in study["series"][0]["instance"]] == list(range(1, 17))
    finally:
        for i in ingesters:
            i.stop()


def test_hearth_dicom_command(tmp_path):
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "HEARTH_DATA_DIR": str(tmp_path / "data"),
        "HEARTH_DICOM_PORT": str(free_port()),
        "HEARTH_DICOM_AE_TITLE": "CLISCP",
    }
    run = [sys.executable, "-m", "fhir_server.cli"]
    up = subprocess.run(
        [*run, "db", "upgrade"], env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert up.returncode == 0, up.stderr
    proc = subprocess.Popen(
        [*run, "dicom"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        port = int(env["HEARTH_DICOM_PORT"])
        _wait(lambda: echoscu(port, aec="CLISCP").returncode == 0, timeout=60)
        out = storescu(port, sample_files()[0], aec="CLISCP")
        assert out.returncode == 0, out.stderr
        h = read_header(sample_files()[0])
        assert InstanceStore(tmp_path / "data").exists(str(h.SOPInstanceUID))
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM: a clean stop that flushes the writer
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.settings import Settings
    from mappings.dicom.imaging_study import study_search

    ctx = build_context(Settings(database_url=env["HEARTH_DATABASE_URL"]))
    try:
        stored = ctx.repo.read(
            lambda u: u.read_many(u.match("ImagingStudy", study_search(str(h.StudyInstanceUID))))
        )
    finally:
        ctx.repo.engine.dispose()
    assert [s.content["numberOfInstances"] for s in stored] == [1]


def test_hearth_serve_runs_the_listener(tmp_path):
    """`hearth serve` as an operator runs it: the DICOM listener on HEARTH_DICOM_PORT beside HTTP;
    what storescu sends is an ImagingStudy over HTTP; --no-dicom leaves the port closed."""
    http_port, dicom_port = free_port(), free_port()
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "HEARTH_DATA_DIR": str(tmp_path / "data"),
        "HEARTH_PORT": str(http_port),
        "HEARTH_BASE_URL": f"http://127.0.0.1:{http_port}",
        "HEARTH_DICOM_PORT": str(dicom_port),
    }
    run = [sys.executable, "-m", "fhir_server.cli"]
    up = subprocess.run(
        [*run, "db", "upgrade"], env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert up.returncode == 0, up.stderr
    token = system_token(env["HEARTH_DATABASE_URL"], env["HEARTH_BASE_URL"])
    proc = subprocess.Popen(
        [*run, "serve"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: echoscu(dicom_port).returncode == 0, timeout=60)
        out = storescu(dicom_port, sample_files()[3])
        assert out.returncode == 0, out.stderr
        h = read_header(sample_files()[3])

        def listed() -> bool:
            r = httpx.get(
                f"http://127.0.0.1:{http_port}/fhir/ImagingStudy",
                params={"identifier": f"urn:dicom:uid|urn:oid:{h.StudyInstanceUID}"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            return bool(r.get("entry"))

        _wait(listed)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    quiet = subprocess.Popen(
        [*run, "serve", "--no-dicom"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _http_up(http_port), timeout=60)
        assert echoscu(dicom_port).returncode != 0
    finally:
        quiet.terminate()
        quiet.wait(timeout=30)


def _http_up(port: int) -> bool:
    try:
        return HTTP.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_based_on_the_service_request_of_the_accession(dicom_hearth):
    accession = f"ACC-{generate_uid()[-8:]}"
    order = HTTP.post(
        f"{dicom_hearth.fhir}/ServiceRequest",
        json={
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "identifier": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "ACSN",
                            }
                        ]
                    },
                    "system": "urn:example:ris",
                    "value": accession,
                }
            ],
            "subject": {"display": "whoever"},
        },
    ).json()
    ds = pydicom.dcmread(sample_files()[1])
    ds.StudyInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.AccessionNumber = accession
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    dicom_hearth.ingest.receive(buf.getvalue())
    study = dicom_hearth.study(str(ds.StudyInstanceUID))
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
    acsn = [i for i in study["identifier"] if i.get("type")]
    assert acsn[0]["value"] == accession


def test_a_failed_write_is_retried(dicom_hearth, tmp_path):
    repo = dicom_hearth.app.state.context.repo
    ingest = Ingest(repo, InstanceStore(tmp_path), dicomweb_base="http://x/dicomweb")
    real = ingest._write_unit
    failures = []

    def flaky(unit, study, items):  # type: ignore[no-untyped-def]
        if len(failures) < 2:
            failures.append(1)
            raise ConnectionError("database restarting")
        return real(unit, study, items)

    ingest._write_unit = flaky  # type: ignore[method-assign]
    ingest.start()
    try:
        study_uid = generate_uid()
        for data in _copies(3, study_uid):
            ingest.receive(data)
        assert ingest.flush()
        assert len(failures) == 2
        found = HTTP.get(f"{dicom_hearth.fhir}/ImagingStudy/{ingest.study_id(study_uid)}").json()
        assert found["numberOfInstances"] == 3
    finally:
        ingest.stop()
