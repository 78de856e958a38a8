"""The report's PDF signature (ISO 32000-1 §12.8, PAdES-style CMS signature, with pyHanko): a
Hearth signing key and its X.509 certificate sign the PDF as an incremental update, naming who
approved it.

The key and certificate are either configured (``HEARTH_REPORT_SIGNING_KEY`` /
``HEARTH_REPORT_SIGNING_CERT``: PEM files; the certificate file may carry the issuing chain after
the signer's certificate) or, when neither is set, generated on first use and kept in the database (``auth_key``, encrypted
with ``HEARTH_SECRET_KEYS``; an ECDSA P-256 key and a self-signed certificate for the facility;
the first process to create it wins a race), so every node signs with the same certificate. A
``HEARTH_DATA_DIR/keys/report-signing.pem`` left by an earlier version is imported once. ``sign_pdf``
itself does no I/O: key and certificate bytes in, signed PDF out.
"""

from __future__ import annotations

import datetime
import io
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from resources.auth.key_store import KeyStore

FIELD = "HearthReportSignature"
GENERATED = Path("keys") / "report-signing.pem"


class SigningError(Exception):
    """The signing key or certificate is missing, unreadable or does not match."""


@dataclass(frozen=True)
class SigningMaterial:
    key_pem: bytes  # PKCS#8 or traditional PEM private key, unencrypted
    cert_pem: bytes  # the signer's certificate first, then any chain

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.cert_pem)[0]


def sign_pdf(
    pdf: bytes,
    material: SigningMaterial,
    *,
    signer_name: str,
    reason: str,
    location: str | None = None,
) -> bytes:
    """``pdf`` with an approval signature appended (an incremental update covering the whole
    document); ``signer_name`` and ``reason`` go into the signature dictionary's /Name and
    /Reason."""
    from pyhanko.keys import load_certs_from_pemder_data, load_private_key_from_pemder_data
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    _check(material)
    try:
        certs = list(load_certs_from_pemder_data(material.cert_pem))
        key = load_private_key_from_pemder_data(material.key_pem, passphrase=None)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a configuration error
        raise SigningError(f"the report signing key or certificate cannot be read: {exc}") from exc
    if not certs:
        raise SigningError("the report signing certificate file holds no certificate")
    signer = signers.SimpleSigner(
        signing_cert=certs[0],
        signing_key=key,
        cert_registry=SimpleCertificateStore.from_certs(certs),
    )
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD,
        md_algorithm="sha256",
        name=signer_name,
        reason=reason,
        location=location,
        subfilter=SigSeedSubFilter.PADES,
    )
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    out = signers.sign_pdf(writer, meta, signer=signer)
    return out.getvalue()


def load(key_file: Path, cert_file: Path) -> SigningMaterial:
    """Configured key and certificate files; checked to belong together."""
    try:
        material = SigningMaterial(key_file.read_bytes(), cert_file.read_bytes())
    except OSError as exc:
        raise SigningError(f"the report signing key or certificate cannot be read: {exc}") from exc
    _check(material)
    return material


REPORT_KEY = "report-signing"  # its name in auth_key (resources/auth/key_store.py)


def shared(store: KeyStore, data_dir: Path, facility: str) -> SigningMaterial:
    """Hearth's own signing material in the database, shared by every node: generated the first
    time, or imported once from ``data_dir``'s file (an earlier version's) when there is one.
    ``SecretKeyError`` when this node's ``HEARTH_SECRET_KEYS`` do not decrypt it."""

    def make() -> str:
        path = data_dir / GENERATED
        return (path.read_bytes() if path.exists() else _generate(facility)).decode()

    blob, _ = store.get_or_create(REPORT_KEY, make)
    return _split(blob.encode())


def load_or_create(data_dir: Path, facility: str) -> SigningMaterial:
    """Hearth's own signing material under ``data_dir``, generated the first time (one node
    only: servers use ``shared``)."""
    path = data_dir / GENERATED
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_generate(facility))
        try:
            os.link(tmp, path)  # the first process wins if two race
        except FileExistsError:
            pass
        tmp.unlink()
    return _split(path.read_bytes())


def _split(blob: bytes) -> SigningMaterial:
    """A generated file's or stored key's text (the key's PEM, then the certificate's)."""
    key_end = blob.index(b"-----END PRIVATE KEY-----") + len(b"-----END PRIVATE KEY-----")
    material = SigningMaterial(blob[:key_end].strip() + b"\n", blob[key_end:].strip() + b"\n")
    _check(material)
    return material


def _check(material: SigningMaterial) -> None:
    try:
        key = serialization.load_pem_private_key(material.key_pem, password=None)
        cert = material.certificate()
    except (ValueError, TypeError) as exc:
        raise SigningError(f"the report signing key or certificate cannot be read: {exc}") from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    if cert.public_key().public_bytes(pem, spki) != key.public_key().public_bytes(pem, spki):
        raise SigningError("the report signing certificate does not belong to the signing key")


def _generate(facility: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{facility} report signing"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, facility[:64] or "Hearth"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem_key + cert.public_bytes(serialization.Encoding.PEM)
