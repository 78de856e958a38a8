"""DICOMweb against the real ``dicomweb-client`` (PyPI) and raw HTTP, on SQLite and PostgreSQL:
STOW-RS, QIDO-RS, WADO-RS (instances, metadata, frames), rendered images, bad input."""

from __future__ import annotations

import io
import uuid

import httpx
import numpy as np
import pydicom
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from tests.dicom import HTTP, read_header, sample_files
from tests.servers import system_token


def _client(dicom_hearth) -> DICOMwebClient:  # type: ignore[no-untyped-def]
    return DICOMwebClient(url=dicom_hearth.dicomweb, headers=dicom_hearth.running.headers)


http = HTTP  # with the server's token; a busy 2-core machine decodes JPEG 2000 slowly


def test_store_search_retrieve(dicom_hearth):
    client = _client(dicom_hearth)
    datasets = [pydicom.dcmread(p) for p in sample_files()]
    reply = client.store_instances(datasets)
    stored = {str(i.ReferencedSOPInstanceUID) for i in reply.ReferencedSOPSequence}
    assert stored == {str(d.SOPInstanceUID) for d in datasets}
    assert "FailedSOPSequence" not in reply

    cr = datasets[0]  # RG1_UNCR: CR chest, patient 9RG1
    found = client.search_for_studies(search_filters={"PatientID": "9RG1"})
    uids = {pydicom.Dataset.from_json(r).StudyInstanceUID for r in found}
    assert uids == {cr.StudyInstanceUID}
    rec = pydicom.Dataset.from_json(found[0])
    assert rec.AccessionNumber == cr.AccessionNumber
    assert rec.StudyDate == cr.StudyDate
    assert list(rec.ModalitiesInStudy) == ["CR"] or rec.ModalitiesInStudy == "CR"
    assert rec.NumberOfStudyRelatedInstances == 1
    by_modality = client.search_for_series(search_filters={"Modality": "SEG"})
    assert {pydicom.Dataset.from_json(r).SeriesInstanceUID for r in by_modality} == {
        datasets[3].SeriesInstanceUID
    }
    by_date = client.search_for_studies(search_filters={"StudyDate": "20040101-20041231"})
    assert {pydicom.Dataset.from_json(r).StudyInstanceUID for r in by_date} == {cr.StudyInstanceUID}
    by_name = client.search_for_studies(search_filters={"PatientName": "compressed*"})
    assert {pydicom.Dataset.from_json(r).PatientID for r in by_name} == {"9RG1"}
    insts = client.search_for_instances(
        study_instance_uid=cr.StudyInstanceUID, series_instance_uid=cr.SeriesInstanceUID
    )
    inst = pydicom.Dataset.from_json(insts[0])
    assert inst.SOPInstanceUID == cr.SOPInstanceUID and inst.Rows == cr.Rows

    back = client.retrieve_instance(cr.StudyInstanceUID, cr.SeriesInstanceUID, cr.SOPInstanceUID)
    assert back.SOPInstanceUID == cr.SOPInstanceUID
    assert back.PixelData == cr.PixelData
    study = client.retrieve_study(datasets[1].StudyInstanceUID)
    assert [d.SOPInstanceUID for d in study] == [datasets[1].SOPInstanceUID]
    meta = client.retrieve_instance_metadata(
        cr.StudyInstanceUID, cr.SeriesInstanceUID, cr.SOPInstanceUID
    )
    assert meta["00080018"]["Value"] == [cr.SOPInstanceUID]
    assert "BulkDataURI" in meta["7FE00010"]

    mr = datasets[2]  # enhanced MR, 10 frames of 64x64 16-bit
    frames = client.retrieve_instance_frames(
        mr.StudyInstanceUID, mr.SeriesInstanceUID, mr.SOPInstanceUID, frame_numbers=[1, 10]
    )
    expected = mr.pixel_array
    assert len(frames) == 2
    got = np.frombuffer(frames[1], dtype=expected.dtype.newbyteorder("<")).reshape(64, 64)
    assert np.array_equal(got, expected[9])

    # the FHIR side: the ImagingStudy was written before STOW-RS answered
    fhir = http.get(
        f"{dicom_hearth.fhir}/ImagingStudy",
        params={"identifier": f"urn:dicom:uid|urn:oid:{cr.StudyInstanceUID}"},
    ).json()
    assert fhir["entry"][0]["resource"]["numberOfInstances"] == 1


def test_rendered_png_and_jpeg_with_windowing(dicom_hearth):
    ct = pydicom.dcmread(sample_files()[1])
    _client(dicom_hearth).store_instances([ct])
    url = (
        f"{dicom_hearth.dicomweb}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
        f"/instances/{ct.SOPInstanceUID}/rendered"
    )
    png = http.get(url, headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(png.content))
    assert img.size == (ct.Columns, ct.Rows) and img.mode == "L"
    narrow = http.get(url, params={"window": "40,1"}, headers={"Accept": "image/png"})
    wide = http.get(url, params={"window": "40,4000"}, headers={"Accept": "image/png"})
    n = np.asarray(Image.open(io.BytesIO(narrow.content)))
    w = np.asarray(Image.open(io.BytesIO(wide.content)))
    assert len(np.unique(n)) <= 3 and len(np.unique(w)) > 10  # the window is applied
    jpeg = http.get(url, headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    bad = http.get(url, params={"window": "x,y"}, headers={"Accept": "image/png"})
    assert bad.status_code == 400


def _multipart(parts: list[bytes], kind: str = "application/dicom") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + p + b"\r\n" for p in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="{kind}"; boundary={boundary}'


def test_stow_bad_input_gets_failure_list_and_nothing_stored(dicom_hearth, tmp_path):
    good = sample_files()[3].read_bytes()
    ds = pydicom.dcmread(sample_files()[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    truncated = buf.getvalue()[:-5000]
    no_uid = pydicom.dcmread(sample_files()[3])
    del no_uid.SeriesInstanceUID
    buf2 = io.BytesIO()
    no_uid.save_as(buf2, enforce_file_format=True)
    body, ctype = _multipart([b"this is not DICOM at all", truncated, buf2.getvalue(), good])
    r = http.post(f"{dicom_hearth.dicomweb}/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 202, r.text
    reply = pydicom.Dataset.from_json(r.json())
    reasons = [int(i.FailureReason) for i in reply.FailedSOPSequence]
    assert reasons == [0xC000, 0xC000, 0xA900]
    assert [i.ReferencedSOPInstanceUID for i in reply.ReferencedSOPSequence] == [
        read_header(sample_files()[3]).SOPInstanceUID
    ]
    assert not dicom_hearth.store.exists(str(ds.SOPInstanceUID))  # the truncated one

    only_bad, ctype = _multipart([b"junk"])
    r = http.post(
        f"{dicom_hearth.dicomweb}/studies", content=only_bad, headers={"Content-Type": ctype}
    )
    assert r.status_code == 409
    other, ctype = _multipart([good])
    wrong_study = http.post(
        f"{dicom_hearth.dicomweb}/studies/1.2.3.4", content=other, headers={"Content-Type": ctype}
    )
    assert wrong_study.status_code == 409
    failed = pydicom.Dataset.from_json(wrong_study.json()).FailedSOPSequence
    assert [int(i.FailureReason) for i in failed] == [0xA900]
    r = http.post(
        f"{dicom_hearth.dicomweb}/studies",
        content=good,
        headers={"Content-Type": "application/dicom"},
    )
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    r = http.post(
        f"{dicom_hearth.dicomweb}/studies",
        content=b"no boundary anywhere",
        headers={"Content-Type": "multipart/related; boundary=x"},
    )
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    # a body cut inside its second part: the first is stored, the cut one is a failure
    cut_body, ctype = _multipart([good, buf.getvalue()])
    r = http.post(
        f"{dicom_hearth.dicomweb}/studies",
        content=cut_body[: len(good) + 200 + 3000],
        headers={"Content-Type": ctype},
    )
    assert r.status_code == 202, r.text
    reply = pydicom.Dataset.from_json(r.json())
    assert [int(i.FailureReason) for i in reply.FailedSOPSequence] == [0xC000]
    assert len(reply.ReferencedSOPSequence) == 1
    assert not dicom_hearth.store.exists(str(ds.SOPInstanceUID))


def test_bad_requests_are_4xx(dicom_hearth):
    base = dicom_hearth.dicomweb
    assert http.get(f"{base}/studies/1.2.3.999999").status_code == 404
    assert http.get(f"{base}/studies/not-a-uid").status_code == 400
    assert http.get(f"{base}/studies", params={"NoSuchKeyword": "x"}).status_code == 400
    assert http.get(f"{base}/studies", params={"limit": "-1"}).status_code == 400
    assert http.get(f"{base}/studies", params={"PatientID": "nobody-has-this"}).status_code == 204


def test_oversized_stow_is_413_and_stores_nothing(dicom_hearth, monkeypatch):
    settings = dicom_hearth.app.state.context.settings
    monkeypatch.setattr(settings, "dicom_max_upload_bytes", 4096)
    ds = pydicom.dcmread(sample_files()[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    body, ctype = _multipart([buf.getvalue()])
    r = http.post(f"{dicom_hearth.dicomweb}/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"
    assert not dicom_hearth.store.exists(str(ds.SOPInstanceUID))


def test_retrieve_transfer_syntaxes(dicom_hearth):
    """No transfer-syntax asked: Explicit VR Little Endian (PS3.18 default), decompressed;
    ``transfer-syntax=*``: as stored; an unsupported one: 406."""
    from tests.dicom import pydicom_data_files

    j2k = next(p for p in pydicom_data_files() if p.name == "693_J2KR.dcm")
    source = pydicom.dcmread(j2k)
    client = _client(dicom_hearth)
    client.store_instances([source])
    uids = (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
    plain = client.retrieve_instance(
        *uids, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),)
    )
    assert plain.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(plain.pixel_array, source.pixel_array)
    stored = client.retrieve_instance(*uids)  # dicomweb-client asks transfer-syntax=*
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert stored.PixelData == source.PixelData
    url = f"{dicom_hearth.dicomweb}/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
    any_syntax = http.get(
        url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    assert (
        any_syntax.status_code == 200
        and b"transfer-syntax=1.2.840.10008.1.2.4.90" in any_syntax.content[:300]
    )
    default = http.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert b"transfer-syntax=1.2.840.10008.1.2.1\r\n" in default.content[:300]
    refused = http.get(
        url,
        headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
        },
    )
    assert refused.status_code == 406


def test_unsupported_sop_class_and_transfer_syntax(dicom_hearth):
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, HangingProtocolStorage

    # STOW-RS: a SOP class Hearth does not store (a non-patient object) → 0x0122
    ds = pydicom.dcmread(sample_files()[1])
    ds.SOPClassUID = HangingProtocolStorage
    ds.file_meta.MediaStorageSOPClassUID = HangingProtocolStorage
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    body, ctype = _multipart([buf.getvalue()])
    r = http.post(f"{dicom_hearth.dicomweb}/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 409
    failed = pydicom.Dataset.from_json(r.json()).FailedSOPSequence
    assert [int(i.FailureReason) for i in failed] == [0x0122]
    assert not dicom_hearth.store.exists(str(ds.SOPInstanceUID))
    # DIMSE: unsupported SOP class / transfer syntax contexts are rejected at negotiation
    ae = AE(ae_title="NEGOTIATE")
    ae.add_requested_context(HangingProtocolStorage)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.4.100")  # MPEG2
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", dicom_hearth.dicom_port, ae_title="HEARTH")
    try:
        assert assoc.is_established
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        assert accepted == {(CTImageStorage, "1.2.840.10008.1.2.1")}
        assert len(assoc.rejected_contexts) == 2
    finally:
        assoc.release()


def test_rendered_for_compressed_and_colour_instances(dicom_hearth):
    """Each compressed transfer syntax decodes (pylibjpeg plugins) and renders at full size."""
    from tests.dicom import pydicom_data_files

    names = {
        "color3d_jpeg_baseline.dcm",  # JPEG baseline, YBR_FULL_422, 120 frames
        "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless SV1
        "MR2_J2KI.dcm",  # JPEG 2000
        "US1_J2KI.dcm",  # JPEG 2000, colour (YBR_ICT)
        "emri_small_RLE.dcm",  # RLE, multi-frame
        "emri_small_jpeg_ls_lossless.dcm",  # JPEG-LS
        "OBXXXX1A_rle_2frame.dcm",  # RLE, PALETTE COLOR
    }
    files = [p for p in pydicom_data_files() if p.name in names]
    assert len(files) == len(names), sorted(p.name for p in files)
    client = _client(dicom_hearth)
    for path in files:
        ds = pydicom.dcmread(path)
        client.store_instances([ds])
        url = (
            f"{dicom_hearth.dicomweb}/studies/{ds.StudyInstanceUID}/series/"
            f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        )
        frame = "/frames/2" if int(ds.get("NumberOfFrames", 1) or 1) > 1 else ""
        r = http.get(f"{url}{frame}/rendered", headers={"Accept": "image/png"})
        assert r.status_code == 200, (path.name, r.text[:300])
        img = Image.open(io.BytesIO(r.content))
        assert img.size == (ds.Columns, ds.Rows), path.name
        colour = ds.SamplesPerPixel == 3 or ds.PhotometricInterpretation == "PALETTE COLOR"
        assert img.mode == ("RGB" if colour else "L"), path.name


def test_dicomweb_needs_a_token_with_imaging_scope(dicom_hearth):
    base = f"{dicom_hearth.dicomweb}/studies"
    anonymous = httpx.get(base)
    assert anonymous.status_code == 401
    assert anonymous.json()["resourceType"] == "OperationOutcome"
    running = dicom_hearth.running
    narrow = system_token(running.database_url, running.root, "system/Observation.rs")
    r = httpx.get(base, headers={"Authorization": f"Bearer {narrow}"})
    assert r.status_code == 403
    reader = system_token(running.database_url, running.root, "system/ImagingStudy.rs")
    assert httpx.get(base, headers={"Authorization": f"Bearer {reader}"}).status_code in (200, 204)
    body, ctype = _multipart([b"not dicom"])
    stow = httpx.post(
        base, content=body, headers={"Content-Type": ctype, "Authorization": f"Bearer {reader}"}
    )
    assert stow.status_code == 403  # storing needs create access
