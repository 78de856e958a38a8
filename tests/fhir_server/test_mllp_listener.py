"""The MLLP listener on its own (fhir_server/hl7v2/mllp.py), over loopback with a recording
handler: framing across and within writes, idle peers disconnected, over-long frames closed,
a failing handler answered AE, and the listener serving on after each."""

from __future__ import annotations

import socket
import threading

import pytest

from fhir_server.hl7v2.mllp import Listener, frame


@pytest.fixture
def listener():  # type: ignore[no-untyped-def]
    seen: list[bytes] = []
    lock = threading.Lock()

    def handle(payload: bytes, peer: str) -> bytes:
        if payload == b"boom":
            raise RuntimeError("handler failure")
        with lock:
            seen.append(payload)
        return b"ACK:" + payload

    running = Listener(
        handle, host="127.0.0.1", port=0, max_message_bytes=1000, idle_seconds=0.5
    ).start()
    running.seen = seen  # type: ignore[attr-defined]
    yield running
    running.stop()


def _read(sock: socket.socket, n: int) -> list[bytes]:
    buf = b""
    sock.settimeout(10)
    while buf.count(b"\x1c\x0d") < n:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return [a[1:] for a in buf.split(b"\x1c\x0d")[:-1]]


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_frames_in_order(listener) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        s.sendall(b"noise" + frame(b"one")[:2])
        s.sendall(frame(b"one")[2:] + frame(b"two") + b"\x0bunfinished" + frame(b"three"))
        assert _read(s, 3) == [b"ACK:one", b"ACK:two", b"ACK:three"]
    assert listener.seen == [b"one", b"two", b"three"]


def test_failing_handler_is_answered_ae(listener) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        s.sendall(frame(b"boom") + frame(b"after"))
        first, second = _read(s, 2)
    assert b"MSA|AE|" in first and b"207" in first
    assert second == b"ACK:after"


def test_idle_and_oversized_peers_are_disconnected(listener) -> None:  # type: ignore[no-untyped-def]
    idle = socket.create_connection(("127.0.0.1", listener.port))
    idle.sendall(b"\x0bhalf a frame")
    assert _closed(idle)  # after idle_seconds
    idle.close()
    big = socket.create_connection(("127.0.0.1", listener.port))
    big.sendall(b"\x0b" + b"x" * 5000)
    assert _closed(big)
    big.close()
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        s.sendall(frame(b"still here"))
        assert _read(s, 1) == [b"ACK:still here"]


def test_port_in_use_is_an_os_error(listener) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            Listener(lambda p, h: p, host="127.0.0.1", port=port).start()
