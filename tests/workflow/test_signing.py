"""The report's PDF signature: Hearth's key signs a WeasyPrint PDF, pyHanko's validator finds it
intact, covering the whole file, by Hearth's certificate — and any change breaks it."""

from __future__ import annotations

import io
import os
import stat

import pytest
import weasyprint
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from fhir_server.runtime.settings import Settings
from workflow import signing


def verify(pdf: bytes, material: signing.SigningMaterial):  # type: ignore[no-untyped-def]
    """pyHanko's validation of the one signature of ``pdf``, trusting only ``material``'s
    certificate."""
    der = material.certificate().public_bytes(serialization.Encoding.DER)
    root = asn1_x509.Certificate.load(der)
    [sig] = PdfFileReader(io.BytesIO(pdf), strict=False).embedded_signatures
    return sig, validate_pdf_signature(sig, ValidationContext(trust_roots=[root]))


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return weasyprint.HTML(string="<h1>Report</h1><p>Suspected melanoma</p>").write_pdf()


def test_signed_pdf_validates_and_names_the_approver(tmp_path, pdf):
    material = signing.load_or_create(tmp_path, "Hearth District Hospital")
    signed = signing.sign_pdf(
        pdf, material, signer_name="Dr Admin", reason="approved by Dr Admin", location="Ward 3"
    )
    assert signed.startswith(pdf)  # an incremental update: the rendered bytes are kept
    sig, status = verify(signed, material)
    assert status.intact and status.valid and status.trusted
    assert status.coverage.name == "ENTIRE_FILE"
    assert (
        status.signing_cert.sha256
        == asn1_x509.Certificate.load(
            material.certificate().public_bytes(serialization.Encoding.DER)
        ).sha256
    )
    assert sig.sig_object["/Name"] == "Dr Admin"
    assert sig.sig_object["/Reason"] == "approved by Dr Admin"
    assert "Hearth District Hospital" in status.signing_cert.subject.human_friendly
    # The same key on the next use, readable only by its owner.
    assert signing.load_or_create(tmp_path, "ignored") == material
    mode = stat.S_IMODE(os.stat(tmp_path / signing.GENERATED).st_mode)
    assert mode == 0o600


def test_a_modified_pdf_fails_validation(tmp_path, pdf):
    material = signing.load_or_create(tmp_path, "Hearth")
    signed = bytearray(signing.sign_pdf(pdf, material, signer_name="A", reason="r"))
    signed[len(pdf) // 2] ^= 0x01  # one bit inside the signed byte range
    _, status = verify(bytes(signed), material)
    assert not status.intact and not status.bottom_line


def test_another_key_is_not_trusted(tmp_path, pdf):
    ours = signing.load_or_create(tmp_path / "ours", "Hearth")
    theirs = signing.load_or_create(tmp_path / "theirs", "Hearth")
    signed = signing.sign_pdf(pdf, theirs, signer_name="A", reason="r")
    _, status = verify(signed, ours)
    assert status.intact and not status.trusted


def test_configured_files_must_be_a_pair_that_belongs_together(tmp_path):
    a = signing.load_or_create(tmp_path / "a", "A")
    b = signing.load_or_create(tmp_path / "b", "B")
    (tmp_path / "key.pem").write_bytes(a.key_pem)
    (tmp_path / "cert.pem").write_bytes(a.cert_pem)
    (tmp_path / "other.pem").write_bytes(b.cert_pem)
    assert signing.load(tmp_path / "key.pem", tmp_path / "cert.pem") == a
    with pytest.raises(signing.SigningError, match="does not belong"):
        signing.load(tmp_path / "key.pem", tmp_path / "other.pem")
    with pytest.raises(signing.SigningError, match="cannot be read"):
        signing.load(tmp_path / "key.pem", tmp_path / "missing.pem")
    configured = Settings(
        report_signing_key=tmp_path / "key.pem", report_signing_cert=tmp_path / "cert.pem"
    )
    assert configured.report_signing() == a
    with pytest.raises(ValueError, match="set together"):
        Settings(report_signing_key=tmp_path / "key.pem")
    with pytest.raises(ValueError, match="IANA"):
        Settings(default_timezone="Mars/Olympus")
