"""The development mail sink: a real SMTP server (aiosmtpd, STARTTLS required, a self-signed
certificate that Hearth's own mail client trusts) that keeps every message it receives in a
Maildir, so that `make run` delivers reports, reminders and messages without any configuration
and an administrator can open them in the web app (``GET /dev/mailbox``).

It runs when ``HEARTH_DEV_MAILBOX`` names a folder, in the process elected to run the listeners
(fhir_server/runtime/listeners.py), on ``HEARTH_DEV_MAILBOX_PORT`` of 127.0.0.1 only; when no
``HEARTH_SMTP_HOST`` is set, Hearth's SMTP settings point at it (``Settings.smtp``). Nothing is
relayed anywhere: it is a development mailbox, not a mail server.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import email.utils
import ipaddress
import logging
import mailbox
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("hearth.mailsink")

HOST = "127.0.0.1"
CERT_NAME, KEY_NAME = "smtp-cert.pem", "smtp-key.pem"


def self_signed(folder: Path, days: int = 365) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1 / localhost (its own CA) and its key, written to
    ``folder``; an existing pair valid for another day is kept."""
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    now = datetime.datetime.now(datetime.UTC)
    if cert_path.exists() and key_path.exists():
        try:
            old = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if old.not_valid_after_utc > now + datetime.timedelta(days=1):
                return cert_path, key_path
        except ValueError:
            pass  # unreadable: made again below
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class _Handler:
    def __init__(self, box: mailbox.Maildir) -> None:
        self.box = box

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.box.add(envelope.content)
        log.info("dev mailbox: a message for %s", ", ".join(envelope.rcpt_tos))
        return "250 OK: kept in the development mailbox"


@dataclass
class MailSink:
    folder: Path
    port: int
    controller: object

    def stop(self) -> None:
        self.controller.stop()  # type: ignore[attr-defined]


def start(folder: Path, port: int) -> MailSink:
    """Start the sink on 127.0.0.1:``port``, keeping mail in ``folder``/Maildir."""
    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs each SMTP command
    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = mailbox.Maildir(folder / "Maildir", create=True)
    controller = Controller(
        _Handler(box), hostname=HOST, port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    log.info("development mailbox on %s:%d, kept in %s", HOST, port, folder / "Maildir")
    return MailSink(folder, port, controller)


# -- reading it back (the admin's Mailbox screen) ---------------------------------------------
def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def _summary(key: str, msg: EmailMessage) -> dict:
    attachments = [
        {
            "filename": part.get_filename() or "",
            "contentType": part.get_content_type(),
            "size": len(part.get_payload(decode=True) or b""),
        }
        for part in msg.iter_attachments()
    ]
    try:
        date = email.utils.parsedate_to_datetime(msg["Date"]).isoformat() if msg["Date"] else None
    except (TypeError, ValueError):
        date = None
    return {
        "id": key,
        "from": str(msg["From"] or ""),
        "to": str(msg["To"] or ""),
        "subject": str(msg["Subject"] or ""),
        "date": date,
        "attachments": attachments,
    }


def messages(folder: Path) -> list[dict]:
    """Every kept message's summary, newest first."""
    path = folder / "Maildir"
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    out = []
    for key in box.keys():
        with box.get_file(key) as fh:
            out.append(_summary(key, _parse(fh.read())))
    return sorted(out, key=lambda m: (m["date"] or "", m["id"]), reverse=True)


def message(folder: Path, key: str) -> tuple[dict, EmailMessage] | None:
    """One message (its summary with the plain-text body), or None when there is none."""
    path = folder / "Maildir"
    if not path.exists() or not key or "/" in key or key.startswith("."):
        return None
    box = mailbox.Maildir(path, create=False)
    try:
        with box.get_file(key) as fh:
            msg = _parse(fh.read())
    except KeyError:
        return None
    body = msg.get_body(preferencelist=("plain",))
    summary = {**_summary(key, msg), "text": body.get_content() if body is not None else ""}
    return summary, msg


def attachment(msg: EmailMessage, index: int) -> tuple[str, str, bytes] | None:
    """The ``index``-th attachment: (file name, content type, bytes)."""
    parts = list(msg.iter_attachments())
    if not 0 <= index < len(parts):
        return None
    part = parts[index]
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return part.get_filename() or f"attachment-{index}", part.get_content_type(), data
