"""The Query/Retrieve SCP against dcmtk's findscu, movescu (into a dcmtk storescp) and getscu,
over loopback, on SQLite and PostgreSQL: Patient Root and Study Root C-FIND at every level with
the usual keys, wildcards and date ranges; C-MOVE to a configured destination (the instances
arrive unchanged) and refused to an unknown one; C-GET (transcoded where the requester does not
take the stored syntax); callers not in HEARTH_DICOM_QR_AES refused."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.dicom import BACKENDS, pydicom_data_files, sample_files, storescu, tool
from tests.servers import database_url, free_port, start_server

DESTINATION = "STORESCP"


class QrHearth:
    def __init__(self, running, port: int, receiver: Path, orthanc_port: int) -> None:  # type: ignore[no-untyped-def]
        self.running = running
        self.port = port
        self.receiver = receiver
        self.orthanc_port = orthanc_port

    @property
    def ingest(self):  # type: ignore[no-untyped-def]
        return self.running.server.config.app.state.dicom.ingest


J2K: list[Path] = []  # a JPEG 2000 instance, with UIDs of its own (written by the fixture)


def _j2k() -> Path:
    return J2K[0]


def _write_j2k(folder: Path) -> None:
    """693_J2KR (pydicom-data) shares its UIDs with 693_UNCR: a copy with new ones (header
    edited, the JPEG 2000 pixel data untouched)."""
    if J2K:
        return
    ds = pydicom.dcmread(next(p for p in pydicom_data_files() if p.name == "693_J2KR.dcm"))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "J2K-QR"
    path = folder / "j2k.dcm"
    ds.save_as(path, enforce_file_format=True)
    J2K.append(path)


def _files() -> list[Path]:
    return [*sample_files(), _j2k()]


@pytest.fixture(scope="module", params=BACKENDS)
def qr(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"qr-{request.param}")
    _write_j2k(tmp_path_factory.mktemp("j2k"))
    receiver = tmp / "received"
    receiver.mkdir()
    scp_port = free_port()
    storescp = subprocess.Popen(
        [tool("storescp"), "-aet", DESTINATION, "+xa", "-od", str(receiver), str(scp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # a second receiver that takes uncompressed syntaxes only (storescp without +xa)
    plain = tmp / "plain"
    plain.mkdir()
    plain_port = free_port()
    plainscp = subprocess.Popen(
        [tool("storescp"), "-aet", "PLAINSCP", "-od", str(plain), str(plain_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url, cleanup = database_url(request.param, tmp)
    port, orthanc_port = free_port(), free_port()
    running = start_server(
        request.param,
        url,
        dicom_enabled=True,
        dicom_port=port,
        data_dir=tmp / "data",
        dicom_quiet_seconds=3600,
        dicom_qr_aes="FINDSCU,MOVESCU,GETSCU,ORTHANC",
        dicom_destinations=f"{DESTINATION}@127.0.0.1:{scp_port},"
        f"ORTHANC@127.0.0.1:{orthanc_port},NOWHERE@127.0.0.1:{free_port()},"
        f"PLAINSCP@127.0.0.1:{plain_port}",
    )
    hearth = QrHearth(running, port, receiver, orthanc_port)
    hearth.plain = plain
    sent = storescu(port, *sample_files())
    assert sent.returncode == 0, sent.stderr
    sent = storescu(port, "-xv", _j2k())  # storescu proposes JPEG 2000 when told
    assert sent.returncode == 0, sent.stderr
    assert hearth.ingest.flush(timeout=120)
    yield hearth
    running.stop()
    for proc in (storescp, plainscp):
        proc.terminate()
        proc.wait(timeout=20)
    cleanup()


def _find(qr, tmp: Path, *keys: str, model: str = "-S", aet: str = "FINDSCU"):  # type: ignore[no-untyped-def]
    out = tmp / f"find-{time.monotonic_ns()}"
    out.mkdir()
    args = [tool("findscu"), model, "-v", "-aet", aet, "-aec", "HEARTH", "-X", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    result = subprocess.run(
        [*args, "127.0.0.1", str(qr.port)], capture_output=True, text=True, timeout=120
    )
    return result, [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def _headers() -> dict[str, pydicom.Dataset]:
    return {p.name: pydicom.dcmread(p, stop_before_pixels=True) for p in _files()}


def test_find_study_root_study_level(qr, tmp_path):
    cr = _headers()["RG1_UNCR.dcm"]
    result, found = _find(
        qr,
        tmp_path,
        "QueryRetrieveLevel=STUDY",
        "PatientID=9RG1",
        "StudyInstanceUID",
        "StudyDate",
        "AccessionNumber",
        "PatientName",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "StudyDescription",
    )
    assert result.returncode == 0, result.stderr
    assert len(found) == 1
    [rec] = found
    assert rec.StudyInstanceUID == cr.StudyInstanceUID
    assert rec.StudyDate == cr.StudyDate
    assert rec.AccessionNumber == cr.AccessionNumber
    assert str(rec.PatientName) == str(cr.PatientName)
    assert rec.ModalitiesInStudy == "CR"
    assert int(rec.NumberOfStudyRelatedInstances) == 1
    assert rec.QueryRetrieveLevel == "STUDY"
    assert "StudyDescription" in rec  # asked for: present (empty when Hearth has no value)


def test_find_wildcards_and_date_ranges(qr, tmp_path):
    headers = _headers()
    dated = {
        str(h.StudyInstanceUID): str(h.StudyDate)
        for h in headers.values()
        if str(h.get("StudyDate", "") or "")
    }

    def studies(*keys: str) -> set[str]:
        result, found = _find(qr, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys)
        assert result.returncode == 0, result.stderr
        return {str(r.StudyInstanceUID) for r in found}

    everything = {str(h.StudyInstanceUID) for h in headers.values()}
    assert studies() == everything  # universal matching
    in_2004 = {u for u, d in dated.items() if "20040101" <= d <= "20041231"}
    assert in_2004 and studies("StudyDate=20040101-20041231") == in_2004
    from_2003 = {u for u, d in dated.items() if d >= "20030101"}
    assert studies("StudyDate=20030101-") == from_2003
    until_2003 = {u for u, d in dated.items() if d <= "20031231"}
    assert studies("StudyDate=-20031231") == until_2003
    assert studies("StudyDate=19990101-19991231") == set()
    # wildcards: * and ? on a Person Name (case-insensitive) and on a Patient ID
    cr = headers["RG1_UNCR.dcm"]
    assert studies("PatientName=compressed*") == {str(cr.StudyInstanceUID)}
    assert studies("PatientID=9R?1") == {str(cr.StudyInstanceUID)}
    assert studies("PatientID=CQ500*") == {
        str(h.StudyInstanceUID) for h in headers.values() if str(h.PatientID).startswith("CQ500")
    }
    # a UID list (PS3.4 C.2.2.2.2)
    two = sorted(everything)[:2]
    assert studies(f"StudyInstanceUID={two[0]}\\{two[1]}") == set(two)
    assert studies("ModalitiesInStudy=SEG") == {str(headers["liver.dcm"].StudyInstanceUID)}


def test_find_patient_root_every_level(qr, tmp_path):
    liver = _headers()["liver.dcm"]
    result, patients = _find(
        qr,
        tmp_path,
        "QueryRetrieveLevel=PATIENT",
        "PatientID=99000",
        "PatientName",
        "NumberOfPatientRelatedStudies",
        model="-P",
    )
    assert result.returncode == 0, result.stderr
    [p] = patients
    assert str(p.PatientName) == str(liver.PatientName)
    assert int(p.NumberOfPatientRelatedStudies) == 1
    _, studies = _find(
        qr, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=99000", "StudyInstanceUID", model="-P"
    )
    assert [s.StudyInstanceUID for s in studies] == [liver.StudyInstanceUID]
    _, series = _find(
        qr,
        tmp_path,
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={liver.StudyInstanceUID}",
        "SeriesInstanceUID",
        "Modality",
        "NumberOfSeriesRelatedInstances",
        model="-P",
    )
    assert [(s.SeriesInstanceUID, s.Modality) for s in series] == [(liver.SeriesInstanceUID, "SEG")]
    assert int(series[0].NumberOfSeriesRelatedInstances) == 1
    _, images = _find(
        qr,
        tmp_path,
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={liver.StudyInstanceUID}",
        f"SeriesInstanceUID={liver.SeriesInstanceUID}",
        "SOPInstanceUID",
        "SOPClassUID",
        "NumberOfFrames",
        model="-P",
    )
    assert [(i.SOPInstanceUID, i.SOPClassUID) for i in images] == [
        (liver.SOPInstanceUID, liver.SOPClassUID)
    ]
    assert int(images[0].NumberOfFrames) == int(liver.NumberOfFrames)


def test_find_refusals(qr, tmp_path):
    # Study Root has no PATIENT level
    result, found = _find(qr, tmp_path, "QueryRetrieveLevel=PATIENT", "PatientID")
    text = (result.stdout + result.stderr).lower().replace(" ", "")
    assert found == [] and "doesnotmatchsopclass" in text, text
    # an AE not in HEARTH_DICOM_QR_AES learns nothing
    result, found = _find(qr, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID", aet="EVILAE")
    text = (result.stdout + result.stderr).lower().replace(" ", "")
    assert found == [] and "0x124" in text, text


def _received(qr) -> dict[str, pydicom.Dataset]:  # type: ignore[no-untyped-def]
    return {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, qr.receiver.glob("*"))}


def test_move_study_to_configured_destination(qr):
    source = pydicom.dcmread(sample_files()[1])  # 693_UNCR: CT
    result = subprocess.run(
        [
            tool("movescu"),
            "-S",
            "-aet",
            "MOVESCU",
            "-aec",
            "HEARTH",
            "-aem",
            DESTINATION,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={source.StudyInstanceUID}",
            "127.0.0.1",
            str(qr.port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    got = _received(qr)[str(source.SOPInstanceUID)]
    assert got.StudyInstanceUID == source.StudyInstanceUID
    assert got.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert np.array_equal(got.pixel_array, source.pixel_array)


def test_move_transcodes_for_a_destination_without_the_stored_syntax(qr):
    """The JPEG 2000 instance moved to a storescp that accepts uncompressed syntaxes only:
    it arrives transcoded, with its own UIDs and the same pixels."""
    j2k = pydicom.dcmread(_j2k())
    result = subprocess.run(
        [
            tool("movescu"),
            "-S",
            "-aet",
            "MOVESCU",
            "-aec",
            "HEARTH",
            "-aem",
            "PLAINSCP",
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={j2k.StudyInstanceUID}",
            "-k",
            f"SeriesInstanceUID={j2k.SeriesInstanceUID}",
            "127.0.0.1",
            str(qr.port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    got = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, qr.plain.glob("*"))}
    moved = got[str(j2k.SOPInstanceUID)]
    assert not moved.file_meta.TransferSyntaxUID.is_compressed
    assert moved.StudyInstanceUID == j2k.StudyInstanceUID
    assert np.array_equal(moved.pixel_array, j2k.pixel_array)


def test_move_to_unknown_destination_is_refused(qr):
    source = pydicom.dcmread(sample_files()[0], stop_before_pixels=True)
    result = subprocess.run(
        [
            tool("movescu"),
            "-S",
            "-v",
            "-aet",
            "MOVESCU",
            "-aec",
            "HEARTH",
            "-aem",
            "STRANGER",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={source.StudyInstanceUID}",
            "127.0.0.1",
            str(qr.port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = (result.stdout + result.stderr).lower().replace(" ", "")
    assert "movedestinationunknown" in text, text
    assert not any(DESTINATION in str(p) for p in qr.receiver.iterdir() if p.name.startswith("CR"))


def test_get_series_with_getscu(qr, tmp_path):
    j2k = pydicom.dcmread(_j2k())
    out = tmp_path / "got"
    out.mkdir()
    # getscu proposes uncompressed storage contexts only: the JPEG 2000 instance is sent
    # transcoded, with its own UIDs
    result = subprocess.run(
        [
            tool("getscu"),
            "-S",
            "-aet",
            "GETSCU",
            "-aec",
            "HEARTH",
            "-od",
            str(out),
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={j2k.StudyInstanceUID}",
            "-k",
            f"SeriesInstanceUID={j2k.SeriesInstanceUID}",
            "127.0.0.1",
            str(qr.port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    files = list(out.iterdir())
    assert len(files) == 1, (result.stdout, result.stderr)
    got = pydicom.dcmread(files[0])
    assert got.SOPInstanceUID == j2k.SOPInstanceUID
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    assert np.array_equal(got.pixel_array, j2k.pixel_array)


def test_orthanc_queries_and_retrieves_from_hearth(qr, tmp_path):
    """Orthanc (Debian) as a PACS peer: C-FIND through its REST API (/modalities/hearth/query),
    then C-MOVE of the answer to itself (/queries/{id}/retrieve)."""
    import httpx

    from tests.dicom import Orthanc

    liver = pydicom.dcmread(sample_files()[3])
    orthanc = Orthanc(tmp_path / "orthanc", qr.port, dicom_port=qr.orthanc_port)
    try:
        query = httpx.post(
            f"{orthanc.url}/modalities/hearth/query",
            json={"Level": "Study", "Query": {"PatientID": "99000", "StudyDate": "20030101-"}},
            timeout=60,
        )
        assert query.status_code == 200, query.text
        qid = query.json()["ID"]
        answers = httpx.get(f"{orthanc.url}/queries/{qid}/answers?expand&simplify").json()
        assert [a["StudyInstanceUID"] for a in answers] == [str(liver.StudyInstanceUID)]
        moved = httpx.post(
            f"{orthanc.url}/queries/{qid}/retrieve",
            json={"TargetAet": "ORTHANC", "Synchronous": True},
            timeout=120,
        )
        assert moved.status_code == 200, moved.text
        found = httpx.post(
            f"{orthanc.url}/tools/find",
            json={"Level": "Instance", "Query": {"SOPInstanceUID": str(liver.SOPInstanceUID)}},
        ).json()
        assert len(found) == 1
        got = pydicom.dcmread(
            __import__("io").BytesIO(httpx.get(f"{orthanc.url}/instances/{found[0]}/file").content)
        )
        assert got.StudyInstanceUID == liver.StudyInstanceUID
        assert np.array_equal(got.pixel_array, liver.pixel_array)
    finally:
        orthanc.stop()


@pytest.mark.parametrize("bad", ["PACS", "PACS@host", "PACS@host:0", "A" * 17 + "@h:104", "P@h:x"])
def test_bad_destinations_stop_startup(bad):
    from pydantic import ValidationError

    from fhir_server.runtime.settings import Settings

    with pytest.raises(ValidationError, match="HEARTH_DICOM_DESTINATIONS"):
        Settings(dicom_destinations=bad)


def test_destinations_are_parsed():
    from fhir_server.dicom.qr import Destination, parse_destinations

    assert parse_destinations("PACS@10.0.0.5:104, VIEWER@ws-1.example:11112,") == {
        "PACS": Destination("PACS", "10.0.0.5", 104),
        "VIEWER": Destination("VIEWER", "ws-1.example", 11112),
    }
