"""WADO-RS returns the instance that was stored, whatever transfer syntax it was stored in and
whatever the request accepts (PS3.18 §8.7.3): one instance per transfer syntax Hearth accepts
(``sop_classes.TRANSFER_SYNTAXES``) is stored by STOW-RS, then retrieved

* with no transfer-syntax parameter (Explicit VR Little Endian, the PS3.18 default, and what
  ``dicomweb-client`` asks when given ``application/dicom`` alone): same Study, Series and SOP
  Instance UIDs, pixel data equal to pydicom's decoding of the original file;
* with ``transfer-syntax=*``: the stored file, byte for byte;
* with its own syntax named: as stored; with Implicit VR Little Endian named: transcoded, same UIDs
  and pixels; with several syntaxes listed: the stored one when it is among them.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import pathlib

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from fhir_server.dicom.sop_classes import TRANSFER_SYNTAXES
from tests.dicom import HTTP, pydicom_data_files

PYDICOM_TEST_FILES = pathlib.Path(pydicom.__file__).parent / "data" / "test_files"

# one file per accepted transfer syntax: pydicom-data (PyPI) or pydicom's own test files
SOURCES = {
    "1.2.840.10008.1.2": "MR_small_implicit.dcm",
    "1.2.840.10008.1.2.1": "MR2_UNCR.dcm",
    "1.2.840.10008.1.2.1.99": "image_dfl.dcm",
    "1.2.840.10008.1.2.2": "SC_rgb_expb_16bit_2frame.dcm",
    "1.2.840.10008.1.2.4.50": "color3d_jpeg_baseline.dcm",
    "1.2.840.10008.1.2.4.51": "JPGExtended.dcm",
    # a process 14 SV1 bitstream is also a process 14 one: relabelled as 1.2.840.10008.1.2.4.57
    "1.2.840.10008.1.2.4.57": "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "1.2.840.10008.1.2.4.70": "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "1.2.840.10008.1.2.4.80": "emri_small_jpeg_ls_lossless.dcm",
    "1.2.840.10008.1.2.4.81": "JPEGLSNearLossless_16.dcm",
    "1.2.840.10008.1.2.4.90": "693_J2KR.dcm",
    "1.2.840.10008.1.2.4.91": "US1_J2KI.dcm",
    "1.2.840.10008.1.2.5": "emri_small_RLE.dcm",
}


def test_every_accepted_syntax_has_a_source():
    assert set(SOURCES) == {str(u) for u in TRANSFER_SYNTAXES}


def _find(name: str) -> pathlib.Path:
    for path in pydicom_data_files():
        if path.name == name:
            return path
    path = PYDICOM_TEST_FILES / name
    assert path.is_file(), name
    return path


def _instance(syntax: str, tmp: pathlib.Path) -> bytes:
    """The Part 10 bytes of a fresh instance (new UIDs, so that runs never collide) in
    ``syntax``: the source's header edited, its pixel data (encapsulated or native) untouched;
    big-endian sources are written back big-endian."""
    ds = pydicom.dcmread(_find(SOURCES[syntax]))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = ds.get("PatientID") or "FIDELITY"
    ds.PatientName = ds.get("PatientName") or "Fidelity^Test"
    ds.Modality = ds.get("Modality") or "OT"
    ds.file_meta.TransferSyntaxUID = syntax
    out = tmp / f"{syntax}.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out.read_bytes()


def _parts(response) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    return [(p.get_param("transfer-syntax"), p.get_payload(decode=True)) for p in msg.iter_parts()]


def _get(url: str, accept: str):  # type: ignore[no-untyped-def]
    r = HTTP.get(url, headers={"Accept": accept})
    assert r.status_code == 200, (accept, r.status_code, r.text[:300])
    [(ctype, body)] = _parts(r)
    return ctype, body


def _stow(dicom_hearth, data: bytes) -> None:  # type: ignore[no-untyped-def]
    import uuid

    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = HTTP.post(
        f"{dicom_hearth.dicomweb}/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
    )
    assert r.status_code == 200, r.text[:500]


MULTI = 'multipart/related; type="application/dicom"'


@pytest.mark.parametrize("syntax", sorted(SOURCES))
def test_retrieve_returns_the_same_instance(dicom_hearth, tmp_path, syntax):
    data = _instance(syntax, tmp_path)
    original = pydicom.dcmread(io.BytesIO(data))
    assert original.file_meta.TransferSyntaxUID == syntax
    _stow(dicom_hearth, data)
    url = (
        f"{dicom_hearth.dicomweb}/studies/{original.StudyInstanceUID}/series/"
        f"{original.SeriesInstanceUID}/instances/{original.SOPInstanceUID}"
    )
    expected = original.pixel_array

    def same_instance(body: bytes, want_syntax: str) -> None:
        got = pydicom.dcmread(io.BytesIO(body))
        assert got.file_meta.TransferSyntaxUID == want_syntax
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            assert got[kw].value == original[kw].value, kw
        assert got.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
        assert got.PatientID == original.PatientID
        assert np.array_equal(got.pixel_array, expected)

    # as stored: byte for byte
    sent, body = _get(url, f"{MULTI}; transfer-syntax=*")
    assert sent == syntax
    assert body == data
    # no parameter: Explicit VR Little Endian (stored as it is when it already is)
    sent, body = _get(url, MULTI)
    assert sent == "1.2.840.10008.1.2.1"
    same_instance(body, "1.2.840.10008.1.2.1")
    # its own syntax named, among others: as stored
    sent, body = _get(
        url, f"{MULTI}; transfer-syntax=1.2.840.10008.1.2.4.100, {MULTI}; transfer-syntax={syntax}"
    )
    assert (sent, body) == (syntax, data)
    # Implicit VR Little Endian asked: transcoded, the same instance
    sent, body = _get(url, f"{MULTI}; transfer-syntax=1.2.840.10008.1.2")
    assert sent == "1.2.840.10008.1.2"
    same_instance(body, "1.2.840.10008.1.2")


def test_unproducible_syntax_is_406_with_an_outcome(dicom_hearth, tmp_path):
    data = _instance("1.2.840.10008.1.2.1", tmp_path)
    ds = pydicom.dcmread(io.BytesIO(data))
    _stow(dicom_hearth, data)
    url = f"{dicom_hearth.dicomweb}/studies/{ds.StudyInstanceUID}"
    r = HTTP.get(url, headers={"Accept": f"{MULTI}; transfer-syntax=1.2.840.10008.1.2.4.100"})
    assert r.status_code == 406
    assert r.json()["resourceType"] == "OperationOutcome"
    # RLE Lossless can be produced (pydicom's encoder): same UIDs, same pixels
    sent, body = _get(url, f"{MULTI}; transfer-syntax=1.2.840.10008.1.2.5")
    assert sent == "1.2.840.10008.1.2.5"
    got = pydicom.dcmread(io.BytesIO(body))
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert got.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(got.pixel_array, ds.pixel_array)
