"""The development mailbox: with HEARTH_DEV_MAILBOX set, the elected process runs a real SMTP
sink (STARTTLS) that Hearth's own mail client is pointed at, and administrators read what it
kept over HTTP; others get 401/403, and a server without it answers 404."""

from __future__ import annotations

import mailbox
import smtplib
import time

import httpx
import pytest

from fhir_server.runtime.settings import Settings
from tests.servers import database_url, free_port, start_server, system_token
from workflow import mail


@pytest.fixture(scope="module")
def sink_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("mailbox")
    url, cleanup = database_url("sqlite", tmp)
    server = start_server("sqlite", url, dev_mailbox=tmp / "mail", dev_mailbox_port=free_port())
    yield server
    server.stop()
    cleanup()  # type: ignore[operator]


def _wait(folder, count: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(mailbox.Maildir(folder / "Maildir", create=False)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the sink kept nothing")


def test_mail_sent_by_hearth_is_kept_and_read_by_an_admin(sink_server):  # type: ignore[no-untyped-def]
    settings = sink_server.settings
    config = settings.smtp()
    assert config is not None and config.starttls and config.port == settings.dev_mailbox_port
    pdf = b"%PDF-1.7 a report"
    mail.send(config, "amina@example.org", "Your report", "Dear patient", [("r.pdf", "application/pdf", pdf)])  # fmt: skip
    _wait(settings.dev_mailbox, 1)
    root = f"{sink_server.root}/dev/mailbox"
    listed = httpx.get(root, headers=sink_server.headers)
    assert listed.status_code == 200, listed.text
    [msg] = [m for m in listed.json() if m["to"] == "amina@example.org"]
    assert msg["subject"] == "Your report" and msg["date"]  # RFC 5322: Date is required
    assert msg["attachments"] == [{"filename": "r.pdf", "contentType": "application/pdf", "size": len(pdf)}]  # fmt: skip
    one = httpx.get(f"{root}/{msg['id']}", headers=sink_server.headers).json()
    assert one["text"].strip() == "Dear patient"
    got = httpx.get(f"{root}/{msg['id']}/attachments/0", headers=sink_server.headers)
    assert got.status_code == 200 and got.content == pdf
    assert got.headers["content-type"] == "application/pdf"
    for bad in (f"{root}/nope", f"{root}/{msg['id']}/attachments/1", f"{root}/..%2Fx"):
        r = httpx.get(bad, headers=sink_server.headers)
        assert r.status_code == 404, (bad, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


def test_the_sink_refuses_mail_in_clear(sink_server):  # type: ignore[no-untyped-def]
    with smtplib.SMTP("127.0.0.1", sink_server.settings.dev_mailbox_port, timeout=10) as smtp:
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("a@b.c", ["x@example.org"], b"Subject: clear\r\n\r\nno TLS")


def test_only_administrators_read_the_mailbox(sink_server):  # type: ignore[no-untyped-def]
    root = f"{sink_server.root}/dev/mailbox"
    assert httpx.get(root).status_code == 401
    reader = system_token(sink_server.database_url, sink_server.root, "system/*.rs")
    r = httpx.get(root, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"


def test_no_mailbox_without_the_setting(server):  # type: ignore[no-untyped-def]
    r = httpx.get(f"{server.root}/dev/mailbox", headers=server.headers)
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert Settings(database_url="sqlite://", smtp_host=None).smtp() is None
