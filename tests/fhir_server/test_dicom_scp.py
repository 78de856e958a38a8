"""The DICOM Storage SCP against real dcmtk peers over loopback, on SQLite and PostgreSQL: what
storescu pushes becomes ImagingStudy + Patient, checked field by field against the headers."""

from __future__ import annotations

import re
import threading
from collections import defaultdict

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from fhir_server.dicom import scp
from tests.dicom import (
    HTTP,
    STORESCU_PROPOSE,
    echoscu,
    pydicom_data_files,
    read_header,
    sample_files,
    storescu,
)


def _s(value) -> str | None:  # type: ignore[no-untyped-def]
    text = str(value).strip() if value is not None else ""
    return text or None


def check_study_against_headers(study: dict, headers: list[Dataset]) -> None:
    """Every mapped element compared with the DICOM tag it comes from."""
    first = headers[0]
    ident = {i.get("system"): i["value"] for i in study["identifier"] if "system" in i}
    assert ident["urn:dicom:uid"] == f"urn:oid:{first.StudyInstanceUID}"  # (0020,000D)
    acsn = [
        i
        for i in study["identifier"]
        if i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN"
    ]
    if _s(first.get("AccessionNumber")):  # (0008,0050)
        assert acsn[0]["value"] == _s(first.AccessionNumber)
    else:
        assert acsn == []
    assert study["status"] == "available"
    assert study["subject"]["reference"].startswith("Patient/")
    # (0008,0020) + (0008,0030); an ACR-NEMA "1994.11.05" date (retired US files) is not mapped
    if _s(first.get("StudyDate")) and re.fullmatch(r"[0-9]{8}", str(first.StudyDate)):
        d = str(first.StudyDate)
        assert study["started"].startswith(f"{d[:4]}-{d[4:6]}-{d[6:8]}")
        if _s(first.get("StudyTime")):
            t = str(first.StudyTime).split(".")[0].ljust(6, "0")
            assert study["started"][11:19] == f"{t[:2]}:{t[2:4]}:{t[4:6]}"
    elif not _s(first.get("StudyDate")):
        assert "started" not in study
    if _s(first.get("StudyDescription")):  # (0008,1030)
        assert study["description"] == _s(first.StudyDescription)
    if _s(first.get("ReferringPhysicianName")):  # (0008,0090)
        assert study["referrer"]["display"] == _s(first.ReferringPhysicianName)
    assert study["endpoint"] == [{"reference": "Endpoint/hearth-dicomweb"}]
    by_series: dict[str, list[Dataset]] = defaultdict(list)
    for h in headers:
        by_series[str(h.SeriesInstanceUID)].append(h)
    assert study["numberOfSeries"] == len(by_series)
    assert study["numberOfInstances"] == len({str(h.SOPInstanceUID) for h in headers})
    modalities = {str(h.Modality) for h in headers}  # (0008,0060) → modality list (0008,0061)
    assert {m["code"] for m in study["modality"]} == modalities
    assert all(
        m["system"] == "http://dicom.nema.org/resources/ontology/DCM" for m in study["modality"]
    )
    series = {s["uid"]: s for s in study["series"]}  # (0020,000E)
    assert set(series) == set(by_series)
    for uid, members in by_series.items():
        s, h = series[uid], members[0]
        if _s(h.get("SeriesNumber")):  # (0020,0011)
            assert s["number"] == int(h.SeriesNumber)
        assert s["modality"]["code"] == str(h.Modality)
        if _s(h.get("SeriesDescription")):  # (0008,103E)
            assert s["description"] == _s(h.SeriesDescription)
        else:
            assert "description" not in s
        if _s(h.get("BodyPartExamined")):  # (0018,0015)
            site = s["bodySite"]
            assert site.get("display") or site.get("code")
            if str(h.BodyPartExamined) == "CHEST":
                assert site["code"] == "51185008" and site["system"] == "http://snomed.info/sct"
        if _s(h.get("SeriesDate")):  # (0008,0021)
            d = str(h.SeriesDate)
            assert s["started"].startswith(f"{d[:4]}-{d[4:6]}-{d[6:8]}")
        if _s(h.get("Laterality")):  # (0020,0060)
            assert s["laterality"]["system"] == "http://snomed.info/sct"
        instances = {i["uid"]: i for i in s["instance"]}  # (0008,0018)
        assert (
            s["numberOfInstances"]
            == len(instances)
            == len({str(m.SOPInstanceUID) for m in members})
        )
        for m in members:
            i = instances[str(m.SOPInstanceUID)]
            assert i["sopClass"] == {  # (0008,0016)
                "system": "urn:ietf:rfc:3986",
                "code": f"urn:oid:{m.SOPClassUID}",
            }
            if _s(m.get("InstanceNumber")):  # (0020,0013)
                assert i["number"] == int(m.InstanceNumber)
            if _s(m.get("ContentLabel")):  # (0070,0080)
                assert i["title"] == _s(m.ContentLabel)


def check_patient(fhir: str, study: dict, h: Dataset) -> dict:
    p = HTTP.get(f"{fhir}/{study['subject']['reference']}").json()
    ident = p["identifier"][0]
    if _s(h.get("PatientID")):  # (0010,0020)
        assert ident["value"] == _s(h.PatientID)
    else:
        assert ident["value"] == str(h.StudyInstanceUID)
    if _s(h.get("PatientName")):  # (0010,0010)
        family = str(h.PatientName).split("^")[0]
        assert p["name"][0]["family"] == family
    sex = {"M": "male", "F": "female", "O": "other"}.get(_s(h.get("PatientSex")) or "")
    assert p.get("gender") == sex  # (0010,0040)
    if _s(h.get("PatientBirthDate")):  # (0010,0030)
        d = str(h.PatientBirthDate)
        assert p["birthDate"] == f"{d[:4]}-{d[4:6]}-{d[6:8]}"
    return p


def test_echo(dicom_hearth):
    out = echoscu(dicom_hearth.dicom_port)
    assert out.returncode == 0, out.stderr


def test_storescu_samples_become_imaging_studies(dicom_hearth):
    events: list[str] = []
    dicom_hearth.ingest.on_study_complete.append(events.append)
    try:
        files = sample_files()
        out = storescu(dicom_hearth.dicom_port, *files)
        assert out.returncode == 0, out.stderr
        for path in files:
            h = read_header(path)
            study = dicom_hearth.study(str(h.StudyInstanceUID))
            check_study_against_headers(study, [h])
            check_patient(dicom_hearth.fhir, study, h)
            with dicom_hearth.store.open(str(h.SOPInstanceUID)) as f:
                stored = pydicom.dcmread(f)
            source = pydicom.dcmread(path)
            source.pop(0xFFFCFFFC, None)  # trailing padding, which storescu does not send
            assert stored.keys() == source.keys()
            # every element, pixel data included; group lengths are recomputed by the sender
            assert all(stored[t] == source[t] for t in source.keys() if t.element != 0)
        # association release → one completion event per study, naming its ImagingStudy
        dicom_hearth.ingest.flush()
        _wait_for(lambda: len(events) >= len(files))
        ids = {dicom_hearth.study(str(read_header(p).StudyInstanceUID))["id"] for p in files}
        assert sorted(events) == sorted(ids)
        # re-sending is idempotent: no new version, no new instance, no new event
        before = dicom_hearth.study(str(read_header(files[0]).StudyInstanceUID))
        again = storescu(dicom_hearth.dicom_port, files[0])
        assert again.returncode == 0, again.stderr
        after = dicom_hearth.study(str(read_header(files[0]).StudyInstanceUID))
        assert after["meta"]["versionId"] == before["meta"]["versionId"]
        assert after["numberOfInstances"] == before["numberOfInstances"]
        dicom_hearth.ingest.flush()
        assert sorted(events) == sorted(ids)
        endpoint = HTTP.get(f"{dicom_hearth.fhir}/Endpoint/hearth-dicomweb").json()
        assert endpoint["address"] == dicom_hearth.dicomweb
    finally:
        dicom_hearth.ingest.on_study_complete.remove(events.append)


def test_every_supported_pydicom_data_file(dicom_hearth):
    """All files of pydicom-data whose SOP class and transfer syntax Hearth supports."""
    from fhir_server.dicom.parse import CANNOT_UNDERSTAND, Rejected, check
    from fhir_server.dicom.sop_classes import STORAGE_UIDS, TRANSFER_SYNTAXES

    wanted, truncated = [], []
    for path in pydicom_data_files():
        try:
            h = read_header(path)
        except pydicom.errors.InvalidDicomError:
            continue
        if (
            str(h.SOPClassUID) in STORAGE_UIDS
            and h.file_meta.TransferSyntaxUID in TRANSFER_SYNTAXES
        ):
            try:
                check(path.read_bytes(), STORAGE_UIDS)
                wanted.append((path, h))
            except Rejected as exc:
                # refused only when deliberately cut, or when its UIDs break PS3.5 §9.1
                if "too_short" in path.name:
                    assert exc.status == CANNOT_UNDERSTAND and "truncated" in exc.reason
                    truncated.append(path.name)
                else:
                    assert exc.status == 0xA900, (path.name, exc.reason)
                    assert not re.match(r"^[0-9.]+$", str(h.StudyInstanceUID)), path.name
    assert len(wanted) >= 55
    assert truncated
    by_syntax: dict[str, list] = defaultdict(list)  # storescu -R: one syntax per SOP class
    for p, h in wanted:
        by_syntax[str(h.file_meta.TransferSyntaxUID)].append(p)
    unreadable: set[str] = set()
    for syntax, files in by_syntax.items():
        out = storescu(dicom_hearth.dicom_port, *files, "-nh", STORESCU_PROPOSE[syntax])
        # a few files dcmtk itself cannot read (UN-encoded attributes); pynetdicom sends those
        unreadable |= set(
            re.findall(r"missing SOP class \(or instance\) in file: ([^\s,]+)", out.stderr)
        )
        assert "Store Failed" not in out.stderr, out.stderr[-2000:]
    assert len(unreadable) <= 3, unreadable
    if unreadable:
        ae = AE(ae_title="PYSCU")
        for path in unreadable:
            h = read_header(path)
            ae.add_requested_context(h.SOPClassUID, h.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", dicom_hearth.dicom_port, ae_title="HEARTH")
        for path in unreadable:
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
        assoc.release()
    by_study: dict[str, dict[str, Dataset]] = defaultdict(dict)
    for _, h in wanted:  # the same SOP instance may come in several transfer syntaxes
        by_study[str(h.StudyInstanceUID)][str(h.SOPInstanceUID)] = h
    for study_uid, headers in by_study.items():
        study = dicom_hearth.study(study_uid)
        check_study_against_headers(study, list(headers.values()))


def test_patient_mismatch_is_reported_not_overwritten(dicom_hearth, tmp_path):
    src = read_header(sample_files()[0])
    ds = pydicom.dcmread(sample_files()[0])
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientBirthDate = "19500101"  # the stored Patient says 1940-03-05
    path = tmp_path / "mismatch.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert storescu(dicom_hearth.dicom_port, sample_files()[0]).returncode == 0
    out = storescu(dicom_hearth.dicom_port, path)
    assert out.returncode == 0, out.stderr
    study = dicom_hearth.study(str(ds.StudyInstanceUID))
    original = dicom_hearth.study(str(src.StudyInstanceUID))
    assert study["subject"] == original["subject"]  # matched by Patient ID, not duplicated
    patient = HTTP.get(f"{dicom_hearth.fhir}/{study['subject']['reference']}").json()
    assert patient["birthDate"] == "1940-03-05"  # not overwritten
    audits = HTTP.get(
        f"{dicom_hearth.fhir}/AuditEvent", params={"entity": f"ImagingStudy/{study['id']}"}
    ).json()
    assert audits["total"] == 1 if "total" in audits else len(audits["entry"]) == 1
    desc = audits["entry"][0]["resource"]["outcomeDesc"]
    assert "1940-03-05" in desc and "1950-01-01" in desc


def _ct(**overrides) -> Dataset:  # type: ignore[no-untyped-def]
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BAD-INPUT"
    ds.Modality = "CT"
    for k, v in overrides.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_bad_instances_get_failure_statuses_on_a_living_association(dicom_hearth, monkeypatch):
    ae = AE(ae_title="BADSCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", dicom_hearth.dicom_port, ae_title="HEARTH")
    assert assoc.is_established
    try:
        no_uid = _ct()
        del no_uid.StudyInstanceUID
        assert assoc.send_c_store(no_uid).Status == 0xA900
        bad_uid = _ct(SOPInstanceUID="1.2.03-abc")  # hex and leading zeros pass; "-" does not
        assert assoc.send_c_store(bad_uid).Status == 0xA900
        assert not dicom_hearth.store.exists(no_uid.SOPInstanceUID)

        def full(*a, **k):  # type: ignore[no-untyped-def]
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(dicom_hearth.store, "put", full)
        assert assoc.send_c_store(_ct()).Status == 0xA700

        def crash(*a, **k):  # type: ignore[no-untyped-def]
            raise RuntimeError("handler bug")

        monkeypatch.setattr(dicom_hearth.ingest, "receive", crash)
        assert assoc.send_c_store(_ct()).Status == 0xC000
        monkeypatch.undo()
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000  # same association still serves
        good = _ct()
        assert assoc.send_c_store(good).Status == 0x0000
        assert dicom_hearth.store.exists(good.SOPInstanceUID)
    finally:
        assoc.release()


def test_calling_ae_allow_list(dicom_hearth):
    from tests.servers import free_port

    port = free_port()
    listener = scp.start(
        dicom_hearth.ingest,
        host="127.0.0.1",
        port=port,
        ae_title="HEARTH",
        allowed_callers=["GOODAE"],
    )
    try:
        assert echoscu(port, aet="GOODAE").returncode == 0
        refused = echoscu(port, aet="EVILAE")
        assert refused.returncode != 0
        assert "Rejected" in refused.stderr or "rejected" in refused.stderr.lower()
    finally:
        listener.stop()


def _wait_for(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        done.wait(0.05)
