"""Outgoing e-mail over SMTP with STARTTLS (RFC 3207), via the standard library's smtplib."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path


class MailError(Exception):
    """The message could not be handed to the SMTP server."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    sender: str = "hearth@localhost"
    user: str | None = None
    password: str | None = None
    starttls: bool = True
    ca_file: Path | None = None  # trust this CA (a private mail relay); system CAs otherwise
    timeout: float = 30.0


def send(
    config: SmtpConfig | None,
    to: str,
    subject: str,
    text: str,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
) -> str:
    """Send one message; returns its Message-ID. Refuses to send in clear when STARTTLS is on."""
    if config is None:
        raise MailError("no SMTP server is configured (HEARTH_SMTP_HOST)")
    msg = EmailMessage()
    msg["From"] = config.sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)  # RFC 5322 3.6: the origination date is required
    msg["Message-ID"] = _message_id(config.sender)
    msg.set_content(text)
    for filename, mime, data in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
            smtp.ehlo()
            if config.starttls:
                if not smtp.has_extn("starttls"):
                    raise MailError(f"{config.host}:{config.port} does not offer STARTTLS")
                context = ssl.create_default_context(
                    cafile=str(config.ca_file) if config.ca_file else None
                )
                smtp.starttls(context=context)
                smtp.ehlo()
            if config.user:
                smtp.login(config.user, config.password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"sending to {to} via {config.host}:{config.port} failed: {exc}") from exc
    return msg["Message-ID"]


def _message_id(sender: str) -> str:
    from email.utils import make_msgid

    return make_msgid(domain=sender.rpartition("@")[2] or "hearth.local")
