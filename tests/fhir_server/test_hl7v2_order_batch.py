"""HL7 v2 order of arrival and batches over the real edges (``POST /fhir/$hl7v2`` and the MLLP
listener), on SQLite and PostgreSQL: an older A08 after a newer one is acknowledged AA and
changes nothing the newer one wrote; two workers racing a newer and an older update leave the
newer; a batch of N with one bad message applies N-1 and answers the bad one AE/AR in the batch
of ACKs; a batch whose BTS-1 count does not match is applied not at all."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mappings.hl7v2.ordering import ARRIVAL_SYSTEM, LAST_EVENT
from tests.fhir_server.test_hl7v2 import (
    AUTHORITY,
    _uid,
    count,
    frame,
    msa,
    one,
    post,
    read_acks,
)
from tests.servers import database_url, free_port, start_server


def a08(mrn: str, recorded: str, *, family: str, phone: str, cid: str = "", visit: str = "") -> str:
    """An A08 recorded at ``recorded`` (EVN-2), its MSH-7 later still (a queue's delay)."""
    return (
        f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240301120000+0100||ADT^A08^ADT_A01|{cid or _uid()}|P|2.5.1\r"
        f"EVN|A08|{recorded}|||||20240101000000\r"
        f"PID|1||{mrn}^^^HOSP^MR||{family}^Jane||19700215|F|||1 Main St^^Town||{phone}\r"
        f"PV1|1|I|W1^R2^B3||||||||||||||||{visit}^^^HOSP\r"
    )


def acks_of(batch_ack: str) -> list[list[str]]:
    """The MSA of each ACK in a batch of ACKs."""
    return [s.split("|") for s in batch_ack.strip("\r").split("\r") if s.startswith("MSA|")]


def segments(text: str, name: str) -> list[list[str]]:
    return [s.split("|") for s in text.strip("\r").split("\r") if s.startswith(name + "|")]


# --- order of arrival ------------------------------------------------------------------------


def test_an_older_update_after_a_newer_one_changes_nothing_newer(client: httpx.Client) -> None:
    mrn, visit = _uid(), _uid()
    newer, older = _uid(), _uid()
    r = post(
        client,
        a08(mrn, "20240301110000+0100", family="Newer", phone="555-2", cid=newer, visit=visit),
    )
    assert msa(r.text)[:3] == ["MSA", "AA", newer]
    patient = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
    stamp = [x for x in patient["extension"] if x["url"] == LAST_EVENT]
    assert stamp == [{"url": LAST_EVENT, "valueDateTime": "2024-03-01T11:00:00+01:00"}]
    version = patient["meta"]["versionId"]

    r = post(
        client,
        a08(mrn, "20240301100000+0100", family="Older", phone="555-1", cid=older, visit=visit),
    )
    assert r.headers["X-HL7-Ack-Code"] == "AA"
    assert msa(r.text)[:3] == ["MSA", "AA", older]
    err = segments(r.text, "ERR")
    assert err and err[0][2] == "EVN^1^2" and err[0][4] == "W", r.text
    patient = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
    assert patient["name"][0]["family"] == "Newer"
    assert patient["telecom"][0]["value"] == "555-2"
    assert patient["meta"]["versionId"] == version  # not even a new version
    # the late message is on record, marked as such
    header = client.get(f"/MessageHeader?_tag={ARRIVAL_SYSTEM}|out-of-order").json()
    assert (
        any(e["resource"]["id"] for e in header.get("entry", []) if older in str(e["resource"]))
        or count(client, "MessageHeader", f"_tag={ARRIVAL_SYSTEM}|out-of-order") >= 1
    )

    # a newer one still wins; the same (newest) one sent again changes nothing
    latest = a08(mrn, "20240301113000+0100", family="Newest", phone="555-3", visit=visit)
    assert msa(post(client, latest).text)[1] == "AA"
    assert one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")["name"][0]["family"] == "Newest"
    assert msa(post(client, latest).text)[1] == "AA"
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 1


def test_an_older_update_for_a_new_patient_is_applied(client: httpx.Client) -> None:
    mrn = _uid()
    r = post(client, a08(mrn, "20200101000000+0000", family="Only", phone="555-9"))
    assert msa(r.text)[1] == "AA" and "ERR" not in r.text
    assert one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")["name"][0]["family"] == "Only"


def test_racing_updates_leave_the_newest(server) -> None:  # type: ignore[no-untyped-def]
    """Eight workers send eight A08s of one patient at once, in shuffled order: the newest
    recorded one is what stays, and every message is acknowledged AA."""
    mrn = _uid()
    times = [f"2024030110{m:02d}00+0100" for m in range(8)]
    order = [5, 2, 7, 0, 3, 6, 1, 4]

    def send(i: int) -> str:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=120) as c:
            msg = a08(mrn, times[i], family=f"F{i}", phone=f"555-{i}")
            return msa(post(c, msg).text)[1]

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, order))
    assert codes == ["AA"] * 8
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        patient = one(c, "Patient", f"identifier={AUTHORITY}|{mrn}")
    assert patient["name"][0]["family"] == "F7"


# --- batches ---------------------------------------------------------------------------------


def adt04(mrn: str, cid: str) -> str:
    return (
        f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||ADT^A04^ADT_A01|{cid}|P|2.5.1\r"
        f"EVN|A04|20240105081500\r"
        f"PID|1||{mrn}^^^HOSP^MR||Batch^Jane||19700215|F\r"
        f"PV1|1|O\r"
    )


def a_batch(
    mrns: list[str],
    cids: list[str],
    *,
    bad: int | None = None,
    count_: int | None = None,
    file: bool = False,
) -> str:
    messages = []
    for i, (mrn, cid) in enumerate(zip(mrns, cids, strict=True)):
        text = adt04(mrn, cid)
        if i == bad:  # no patient identifier: read, not applied (AE 101)
            text = text.replace(f"{mrn}^^^HOSP^MR", "")
        messages.append(text)
    n = len(messages) if count_ is None else count_
    body = (
        "BHS|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105090000||||B42\r"
        + "".join(messages)
        + f"BTS|{n}\r"
    )
    if file:
        body = "FHS|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105090000||f.hl7||F7\r" + body + "FTS|1\r"
    return body


def check_applied_but_one(
    client: httpx.Client, answer: str, mrns: list[str], cids: list[str], bad: int
) -> None:
    bhs = segments(answer, "BHS")[0]  # split on "|": BHS-n is bhs[n - 1]
    assert bhs[11] == "B42" and bhs[10].startswith("HEARTH")  # BHS-12 refers to the sent BHS-11
    assert segments(answer, "BTS")[0][1] == str(len(mrns))
    got = acks_of(answer)
    assert [m[2] for m in got] == cids  # one ACK per message, in order
    for i, m in enumerate(got):
        assert m[1] == ("AE" if i == bad else "AA"), answer
        assert count(client, "Patient", f"identifier={AUTHORITY}|{mrns[i]}") == (
            0 if i == bad else 1
        )
    # the bad one's ACK carries its ERR
    assert any(s[3].startswith("101^") for s in segments(answer, "ERR"))


def test_a_batch_over_http_applies_all_but_the_bad_message(client: httpx.Client) -> None:
    mrns, cids = [_uid() for _ in range(4)], [_uid() for _ in range(4)]
    r = post(client, a_batch(mrns, cids, bad=2))
    assert r.status_code == 200 and r.headers["X-HL7-Ack-Code"] == "AE"
    assert r.text.startswith("BHS|")
    check_applied_but_one(client, r.text, mrns, cids, 2)
    # a file (FHS ... FTS) is answered by a file
    mrns, cids = [_uid() for _ in range(3)], [_uid() for _ in range(3)]
    r = post(client, a_batch(mrns, cids, bad=0, file=True))
    assert r.text.startswith("FHS|") and segments(r.text, "FTS")[0][1] == "1"
    assert segments(r.text, "FHS")[0][11] == "F7"
    check_applied_but_one(client, r.text, mrns, cids, 0)


def test_a_batch_whose_count_does_not_match_is_not_applied(client: httpx.Client) -> None:
    mrns, cids = [_uid() for _ in range(3)], [_uid() for _ in range(3)]
    r = post(client, a_batch(mrns, cids, count_=4))
    assert r.headers["X-HL7-Ack-Code"] == "AR"
    got = acks_of(r.text)
    assert [m[1] for m in got] == ["AR"] * 3 and [m[2] for m in got] == cids
    assert all(s[2] == "BTS^1^1" for s in segments(r.text, "ERR"))
    assert "nothing applied" in segments(r.text, "BTS")[0][2]
    for mrn in mrns:
        assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 0


def test_a_headless_message_in_a_batch_is_rejected_alone(client: httpx.Client) -> None:
    mrn, cid = _uid(), _uid()
    text = (
        "BHS|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105090000||||B43\r"
        "EVN|A04|20240105081500\rPID|1||X^^^HOSP^MR\r"  # a message without its MSH
        + adt04(mrn, cid)
        + "BTS|2\r"
    )
    r = post(client, text)
    got = acks_of(r.text)
    assert [m[1] for m in got] == ["AR", "AA"] and got[1][2] == cid
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 1


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mllp(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"mllpb-{request.param}"))
    port = free_port()
    running = start_server(request.param, url, mllp_port=port)
    yield running, port
    running.stop()
    cleanup()


def test_mllp_batches_and_late_updates(mllp) -> None:  # type: ignore[no-untyped-def]
    running, port = mllp
    mrns, cids = [_uid() for _ in range(5)], [_uid() for _ in range(5)]
    mrn = _uid()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(frame(a_batch(mrns, cids, bad=3)))
        s.sendall(frame(a_batch([_uid(), _uid()], [_uid(), _uid()], count_=1)))
        s.sendall(frame(a08(mrn, "20240301110000+0100", family="Newer", phone="1")))
        s.sendall(frame(a08(mrn, "20240301100000+0100", family="Older", phone="2")))
        batch_ack, short_ack, newer_ack, older_ack = read_acks(s, 4)
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as client:
        check_applied_but_one(client, batch_ack, mrns, cids, 3)
        assert [m[1] for m in acks_of(short_ack)] == ["AR", "AR"]
        assert msa(newer_ack)[1] == "AA" and msa(older_ack)[1] == "AA"
        assert "EVN^1^2" in older_ack
        assert (
            one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")["name"][0]["family"] == "Newer"
        )
