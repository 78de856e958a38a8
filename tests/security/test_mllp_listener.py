"""The MLLP listener cannot be starved (issue 14; docs/hl7v2.md "Limits"), over real sockets
into a running Hearth on SQLite and PostgreSQL: a large ORU being applied on one connection does
not hold up a small ADT on another, each connection's messages are still applied in order, a
message over HEARTH_MLLP_MAX_MESSAGE_BYTES is answered AR (and nothing of it written), and a
half-sent frame holds no worker and is disconnected after HEARTH_MLLP_FRAME_TIMEOUT."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from fhir_server.hl7v2.mllp import frame
from tests.fhir_server.test_hl7v2 import AUTHORITY, _uid, adt, msa
from tests.servers import database_url, free_port, start_server

BACKENDS = ["sqlite", "postgresql"]
MAX_BYTES = 256 * 1024
WORKERS = 2
HANG_GUARD = 120.0  # only so that a broken listener fails the test instead of hanging it


def big_oru(mrn: str, cid: str, observations: int) -> str:
    """An ORU^R01 with ``observations`` OBX segments (about 50 bytes each)."""
    obx = "".join(
        f"OBX|{i}|NM|2345-7^Glucose^LN||{4 + i % 30 / 10:.1f}|mmol/L^^UCUM|3.9-5.5|N|||F\r"
        for i in range(1, observations + 1)
    )
    return (
        f"MSH|^~\\&|LAB|HOSP|HEARTH|HEARTH|20240105100000+0100||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19700215|F\r"
        f"OBR|1|P{cid}|{cid}^LAB|24320-4^Basic metabolic panel^LN|||20240105090000"
        f"|||||||||||||||20240105095500|||F\r"
    ) + obx


@pytest.fixture(scope="module", params=BACKENDS)
def hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"mllp-{request.param}"))
    running = start_server(
        request.param,
        url,
        mllp_port=free_port(),
        mllp_max_message_bytes=MAX_BYTES,
        mllp_workers=WORKERS,
        mllp_frame_timeout=2.0,
    )
    yield running
    running.stop()
    cleanup()


def _listener(hearth):  # type: ignore[no-untyped-def]
    return hearth.server.config.app.state.mllp


def _connect(hearth) -> socket.socket:  # type: ignore[no-untyped-def]
    s = socket.create_connection(("127.0.0.1", _listener(hearth).port), timeout=HANG_GUARD)
    return s


def _acks(sock: socket.socket, n: int) -> list[str]:
    buf = b""
    while buf.count(b"\x1c\x0d") < n:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {n} ACKs: {buf!r}"
        buf += chunk
    return [a[1:].decode() for a in buf.split(b"\x1c\x0d")[:-1]]


def _patients(hearth, mrn: str) -> list[dict]:  # type: ignore[no-untyped-def]
    r = httpx.get(
        f"{hearth.fhir}/Patient",
        params={"identifier": f"{AUTHORITY}|{mrn}"},
        headers=hearth.headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_small_message_is_not_held_up_by_a_large_one_on_another_connection(hearth) -> None:  # type: ignore[no-untyped-def]
    listener = _listener(hearth)
    big_cid, small_cid = f"BIG{_uid()}", f"SMALL{_uid()}"
    message = big_oru(_uid(), big_cid, 2000)
    assert 80_000 < len(message) < MAX_BYTES
    big_applying = threading.Event()
    small_acked = threading.Event()

    def observe(peer: str, payload: bytes) -> None:
        # The large message is being applied: keep it in progress until the small one has
        # its ACK, so "the small one completes while the large one is in progress" is certain.
        if big_cid.encode() in payload[:200]:
            big_applying.set()
            small_acked.wait(HANG_GUARD)

    listener.on_apply.append(observe)
    big, small = _connect(hearth), _connect(hearth)
    try:
        big.sendall(frame(message.encode()))
        assert big_applying.wait(HANG_GUARD)
        small.sendall(frame(adt("A04", _uid(), cid=small_cid).encode()))
        (small_ack,) = _acks(small, 1)
        assert msa(small_ack)[:3] == ["MSA", "AA", small_cid]
        big.setblocking(False)
        with pytest.raises(BlockingIOError):
            big.recv(1)  # the large one is still in progress: no ACK yet
        big.setblocking(True)
        small_acked.set()
        (big_ack,) = _acks(big, 1)
        assert msa(big_ack)[:3] == ["MSA", "AA", big_cid]
    finally:
        small_acked.set()
        listener.on_apply.remove(observe)
        big.close()
        small.close()


def test_messages_of_one_connection_are_applied_in_order(hearth) -> None:  # type: ignore[no-untyped-def]
    mrn = _uid()
    families = ["First", "Second", "Third", "Fourth"]
    cids = [_uid() for _ in families]
    stream = b"".join(
        frame(adt("A01" if i == 0 else "A08", mrn, family=f, cid=c).encode())
        for i, (f, c) in enumerate(zip(families, cids, strict=True))
    )
    with _connect(hearth) as s:
        s.sendall(stream)
        acks = _acks(s, len(cids))
    assert [msa(a)[1:3] for a in acks] == [["AA", c] for c in cids]
    (patient,) = _patients(hearth, mrn)
    assert patient["name"][0]["family"] == "Fourth"


def test_oversized_message_is_refused_with_ar(hearth) -> None:  # type: ignore[no-untyped-def]
    mrn, cid, after = _uid(), f"HUGE{_uid()}", _uid()
    message = big_oru(mrn, cid, 8000).encode()  # the 394 KB ORU
    assert len(message) > MAX_BYTES
    with _connect(hearth) as s:
        s.sendall(frame(message) + frame(adt("A04", _uid(), cid=after).encode()))
        refused, accepted = _acks(s, 2)
    fields = msa(refused)
    assert fields[:3] == ["MSA", "AR", cid]
    assert str(MAX_BYTES) in refused
    assert msa(accepted)[:3] == ["MSA", "AA", after]  # the connection goes on
    assert _patients(hearth, mrn) == []


def test_half_sent_frames_hold_no_worker_and_are_disconnected(hearth) -> None:  # type: ignore[no-untyped-def]
    halves = [_connect(hearth) for _ in range(WORKERS + 1)]
    try:
        for h in halves:
            h.sendall(b"\x0bMSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|2024")
        cid = _uid()
        with _connect(hearth) as s:
            s.sendall(frame(adt("A04", _uid(), cid=cid).encode()))
            (ack,) = _acks(s, 1)
        assert msa(ack)[:3] == ["MSA", "AA", cid]
        for h in halves:  # HEARTH_MLLP_FRAME_TIMEOUT (2 s), well before the 300 s idle timeout
            try:
                assert h.recv(1024) == b""
            except ConnectionResetError:
                pass
    finally:
        for h in halves:
            h.close()
