"""Email subscriptions end to end (R4 subscription-channel-type ``email``): a Hearth, a real
``hearth worker`` process and a real SMTP server (aiosmtpd, STARTTLS required), on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from email.message import Message

import httpx
import pytest

from tests.servers import database_url, start_server
from tests.subscriptions.conftest import start_worker, stop_worker
from tests.subscriptions.test_rest_hook import LOINC, observation, wait_status
from tests.workflow.smtp import start_smtp


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mailing(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"subs-mail-{request.param}")
    smtp = start_smtp(tmp)
    url, cleanup = database_url(request.param, tmp)
    smtp_settings = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_ca_file": smtp.ca_file,
        "smtp_from": "hearth@hospital.example.org",
    }
    running = start_server(
        request.param,
        url,
        data_dir=tmp / "data",
        subscription_endpoints="mailto:",
        **smtp_settings,
    )
    worker = start_worker(
        running,
        tmp / "data",
        HEARTH_SUBSCRIPTION_ENDPOINTS="mailto:",
        **{f"HEARTH_{k.upper()}": str(v) for k, v in smtp_settings.items()},
    )
    yield running, smtp
    stop_worker(worker)
    running.stop()
    smtp.stop()
    cleanup()


@pytest.fixture
def fhir(mailing):  # type: ignore[no-untyped-def]
    running, _ = mailing
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as c:
        yield c


def email_subscription(address: str, criteria: str, payload: str | None, **extra: object) -> dict:
    channel: dict = {"type": "email", "endpoint": f"mailto:{address}"}
    if payload:
        channel["payload"] = payload
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": channel,
        **extra,
    }


def wait_mail(smtp, address: str, count: int, timeout: float = 60) -> list[Message]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = smtp.inbox.to(address)
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"{len(got)} of {count} e-mails to {address}"
        time.sleep(0.1)


def attachment(msg: Message) -> tuple[str, bytes] | None:
    for part in msg.walk():
        if part.get_filename():
            return part.get_content_type(), part.get_payload(decode=True)
    return None


def body_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            return part.get_payload(decode=True).decode()
    raise AssertionError("no text part")


def test_handshake_then_each_match_is_mailed_with_its_bundle(mailing, fhir):
    _, smtp = mailing
    address = f"ward-{uuid.uuid4().hex[:8]}@hospital.example.org"
    wanted = f"t-{uuid.uuid4().hex[:10]}"
    sub = fhir.post(
        "/Subscription",
        json=email_subscription(address, f"Observation?code={LOINC}|{wanted}",
                                "application/fhir+json"),
    )  # fmt: skip
    assert sub.status_code == 201, sub.text
    sub_id = sub.json()["id"]
    wait_status(fhir, sub_id, "active")
    handshake = wait_mail(smtp, address, 1)[0]
    assert f"Subscription/{sub_id} is active" in handshake["Subject"]
    assert handshake["From"] == "hearth@hospital.example.org"

    fhir.post("/Observation", json=observation(f"t-{uuid.uuid4().hex[:10]}"))  # not matching
    made = fhir.post("/Observation", json=observation(wanted)).json()
    mails = wait_mail(smtp, address, 2)
    time.sleep(0.5)
    mails = smtp.inbox.to(address)
    assert len(mails) == 2  # the handshake and the one match, nothing for the other write
    event = mails[1]
    assert event["Subject"] == f"Hearth: Subscription/{sub_id} event 1"
    mime, data = attachment(event) or ("", b"")
    assert mime == "application/fhir+json"
    bundle = json.loads(data)
    assert bundle["type"] == "history"
    status = bundle["entry"][0]["resource"]
    assert {"name": "type", "valueCode": "event-notification"} in status["parameter"]
    assert bundle["entry"][1]["resource"]["id"] == made["id"]
    # every message went over STARTTLS
    assert all(smtp.inbox.tls_sessions)


def test_empty_payload_mails_no_content_and_xml_payload_attaches_xml(mailing, fhir):
    _, smtp = mailing
    wanted = f"t-{uuid.uuid4().hex[:10]}"
    secret = f"private-{uuid.uuid4().hex}"
    bare, xml = (f"{k}-{uuid.uuid4().hex[:8]}@hospital.example.org" for k in ("bare", "xml"))
    criteria = f"Observation?code={LOINC}|{wanted}"
    ids = []
    for address, payload, extra in (
        (bare, None, {"channel": {"type": "email", "endpoint": f"mailto:{bare}",
                                  "header": ["Subject: New lab result"]}}),
        (xml, "application/fhir+xml", {}),
    ):  # fmt: skip
        body = {**email_subscription(address, criteria, payload), **extra}
        answer = fhir.post("/Subscription", json=body)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    for sub_id in ids:
        wait_status(fhir, sub_id, "active")
    made = fhir.post("/Observation", json=observation(wanted, valueString=secret)).json()

    plain = wait_mail(smtp, bare, 2)[1]
    assert plain["Subject"] == "New lab result"
    assert attachment(plain) is None
    text = body_text(plain)
    assert secret not in text and made["id"] not in text  # no content, not even the focus
    assert f"Subscription/{ids[0]}/$events?eventsSinceNumber=1" in text

    from mappings.fhir_xml import from_xml

    mime, data = attachment(wait_mail(smtp, xml, 2)[1]) or ("", b"")
    assert mime == "application/fhir+xml"
    assert data.startswith(b"<") and b'xmlns="http://hl7.org/fhir"' in data
    bundle = from_xml(data)
    assert bundle["entry"][1]["resource"]["valueString"] == secret


def test_text_plain_carries_the_focus_and_its_narrative(mailing, fhir):
    _, smtp = mailing
    address = f"text-{uuid.uuid4().hex[:8]}@hospital.example.org"
    wanted = f"t-{uuid.uuid4().hex[:10]}"
    sub = fhir.post(
        "/Subscription",
        json=email_subscription(address, f"Observation?code={LOINC}|{wanted}", "text/plain"),
    )
    assert sub.status_code == 201, sub.text
    wait_status(fhir, sub.json()["id"], "active")
    narrative = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Potassium &amp; more</p></div>',
    }
    made = fhir.post("/Observation", json=observation(wanted, text=narrative)).json()
    text = body_text(wait_mail(smtp, address, 2)[1])
    assert f"Focus: Observation/{made['id']}/_history/1" in text
    assert "Potassium & more" in text
