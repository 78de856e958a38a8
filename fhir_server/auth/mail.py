"""Sending Hearth's e-mail (password-reset links) through the ``HEARTH_SMTP_*`` server:
STARTTLS when the server offers it, login when a user is configured."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from fhir_server.runtime.settings import Settings


def send(settings: Settings, to: str, subject: str, text: str) -> None:
    if not settings.smtp_host:
        raise RuntimeError("HEARTH_SMTP_HOST is not set: Hearth cannot send e-mail")
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(text)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls()
            smtp.ehlo()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(msg)
