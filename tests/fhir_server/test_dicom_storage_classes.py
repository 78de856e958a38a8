"""Every storage SOP class pynetdicom knows, and the retired ones modalities still send, is
accepted at negotiation and stored (C-STORE, on SQLite and PostgreSQL); UIDs that are not
strictly valid but unambiguous (hexadecimal digits, leading zeros) are stored as sent, with a
warning in the ImagingStudy note; what is ambiguous is still refused."""

from __future__ import annotations

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import _STORAGE_CLASSES

from fhir_server.dicom.sop_classes import STORAGE
from tests.dicom import HTTP, read_header, sample_files, storescu

RETIRED_US = "1.2.840.10008.5.1.4.1.1.6"  # Ultrasound Image Storage (Retired)


def _minimal(sop_class: str, study: str, series: str, sop_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = "SOPCLASSES"
    ds.PatientName = "Classes^Every"
    ds.Modality = "OT"
    ds.StudyDate = "20240102"
    return ds


def test_storage_classes_cover_pynetdicom_and_the_retired_ones():
    assert set(_STORAGE_CLASSES.values()) <= set(STORAGE)
    assert RETIRED_US in STORAGE
    assert "1.2.840.10008.5.1.4.1.1.88.4" in STORAGE  # Comprehensive SR - Trial (Retired)
    assert "1.2.840.10008.1.3.10" not in STORAGE  # Media Storage Directory: not C-STORE'd


def test_every_storage_class_is_stored(dicom_hearth):
    study = generate_uid()
    sent: dict[str, int] = {}
    classes = list(STORAGE)
    for start in range(0, len(classes), 120):  # PS3.8: at most 128 contexts per association
        chunk = classes[start : start + 120]
        ae = AE(ae_title="EVERYCLASS")
        for sop in chunk:
            ae.add_requested_context(sop, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", dicom_hearth.dicom_port, ae_title="HEARTH")
        assert assoc.is_established
        try:
            assert len(assoc.accepted_contexts) == len(chunk)
            for sop in chunk:
                status = assoc.send_c_store(_minimal(sop, study, generate_uid()))
                sent[sop] = int(status.Status)
        finally:
            assoc.release()
    assert {sop: code for sop, code in sent.items() if code != 0} == {}
    stored = dicom_hearth.study(study)
    assert stored["numberOfInstances"] == len(STORAGE)
    got = {i["sopClass"]["code"] for s in stored["series"] for i in s["instance"]}
    assert got == {f"urn:oid:{sop}" for sop in STORAGE}


def test_retired_ultrasound_from_storescu(dicom_hearth, tmp_path):
    ds = pydicom.dcmread(sample_files()[2])
    ds.SOPClassUID = RETIRED_US
    ds.file_meta.MediaStorageSOPClassUID = RETIRED_US
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    path = tmp_path / "us-retired.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = storescu(dicom_hearth.dicom_port, path)
    assert result.returncode == 0, result.stderr
    study = dicom_hearth.study(str(ds.StudyInstanceUID))
    [instance] = study["series"][0]["instance"]
    assert instance["uid"] == ds.SOPInstanceUID
    assert instance["sopClass"]["code"] == f"urn:oid:{RETIRED_US}"
    assert dicom_hearth.store.exists(str(ds.SOPInstanceUID))
    assert "note" not in study


def test_unambiguous_invalid_uids_are_stored_with_a_warning(dicom_hearth, tmp_path):
    hex_study = "1.2.840.113654.2.70.1.A3F" + generate_uid()[-12:]
    hex_sop = "1.2.840.0113654.2.70.1.BEEF" + generate_uid()[-8:]
    ds = pydicom.dcmread(sample_files()[3])
    ds.StudyInstanceUID = hex_study
    ds.SOPInstanceUID = hex_sop
    ds.file_meta.MediaStorageSOPInstanceUID = hex_sop
    path = tmp_path / "hex.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = storescu(dicom_hearth.dicom_port, path)
    assert result.returncode == 0, result.stderr
    assert "Status" not in result.stderr or "Success" in result.stderr
    study = dicom_hearth.study(hex_study)
    assert study["series"][0]["instance"][0]["uid"] == hex_sop
    notes = [n["text"] for n in study["note"]]
    assert any(hex_study in n and "StudyInstanceUID" in n for n in notes), notes
    assert any(hex_sop in n and "SOPInstanceUID" in n for n in notes), notes
    # served back by DICOMweb under its own UIDs
    url = f"{dicom_hearth.dicomweb}/studies/{hex_study}/series/{ds.SeriesInstanceUID}/instances/{hex_sop}"
    r = HTTP.get(
        url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    assert r.status_code == 200
    assert read_header(path).SOPInstanceUID == hex_sop


def test_ambiguous_uids_are_still_refused(dicom_hearth):
    study = generate_uid()
    ae = AE(ae_title="BADUIDS")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7", ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", dicom_hearth.dicom_port, ae_title="HEARTH")
    assert assoc.is_established
    try:
        for bad in ("1.2..3", "1.2.3-4", "../../etc", "1.2.3 4"):
            ds = _minimal("1.2.840.10008.5.1.4.1.1.7", study, generate_uid(), sop_uid=bad)
            status = assoc.send_c_store(ds)
            assert int(status.Status) == 0xA900, bad
    finally:
        assoc.release()
    assert (
        HTTP.get(
            f"{dicom_hearth.fhir}/ImagingStudy",
            params={"identifier": f"urn:dicom:uid|urn:oid:{study}"},
        )
        .json()
        .get("total", 0)
        == 0
    )
