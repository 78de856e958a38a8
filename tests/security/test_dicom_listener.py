"""The DICOM listener cannot be starved: idle TCP connections, a peer that stalls half-way
through a PDU and an association that goes silent each hold a slot only for a bounded time, the
association limit is configurable, and a real peer (dcmtk's echoscu) is served while they are
open (issue 14; docs/dicom.md "Connections and timeouts")."""

from __future__ import annotations

import socket
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.dicom import BACKENDS, echoscu
from tests.servers import database_url, free_port, start_server

MAX_ASSOCIATIONS = 16  # above pynetdicom's default of 10
ACSE_TIMEOUT = 300.0  # long: a slot freed in these tests is freed by the close, not by a timer
NETWORK_TIMEOUT = 2.0
HANG_GUARD = 60.0  # far below ACSE_TIMEOUT, far above NETWORK_TIMEOUT


@pytest.fixture(scope="module", params=BACKENDS)
def hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"dicom-listener-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    port = free_port()
    running = start_server(
        request.param,
        url,
        dicom_enabled=True,
        dicom_port=port,
        data_dir=tmp / "data",
        dicom_max_associations=MAX_ASSOCIATIONS,
        dicom_acse_timeout=ACSE_TIMEOUT,
        dicom_network_timeout=NETWORK_TIMEOUT,
    )
    running.dicom_port = port  # type: ignore[attr-defined]
    yield running
    running.stop()
    cleanup()


def _active(hearth) -> int:  # type: ignore[no-untyped-def]
    """Associations (and connections not associated yet) the SCP holds a thread for."""
    server = hearth.server.config.app.state.dicom.listener.server
    return len(server.active_associations)


def _wait_active(hearth, predicate) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + HANG_GUARD
    while not predicate(n := _active(hearth)):
        assert time.monotonic() < deadline, f"{n} associations still active"
        time.sleep(0.05)
    return n


def _idle(port: int) -> socket.socket:
    """A TCP connection that never sends anything."""
    return socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)


def _stalled(port: int) -> socket.socket:
    """A connection that sends the first two bytes of an A-ASSOCIATE-RQ PDU header and stops."""
    s = _idle(port)
    s.sendall(b"\x01\x00")
    return s


def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_peer_is_served_while_idle_and_stalled_connections_are_open(hearth) -> None:  # type: ignore[no-untyped-def]
    before = _wait_active(hearth, lambda n: n == 0)
    assert before == 0
    held = [_idle(hearth.dicom_port) for _ in range(10)]
    held += [_stalled(hearth.dicom_port) for _ in range(2)]
    try:
        _wait_active(hearth, lambda n: n >= len(held))  # the SCP has taken every one of them
        result = echoscu(hearth.dicom_port)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        for s in held:
            s.close()


def test_connections_closed_by_their_peer_free_their_slot_at_once(hearth) -> None:  # type: ignore[no-untyped-def]
    _wait_active(hearth, lambda n: n == 0)
    held = [_idle(hearth.dicom_port) for _ in range(MAX_ASSOCIATIONS + 1)]
    _wait_active(hearth, lambda n: n >= MAX_ASSOCIATIONS + 1)
    refused = echoscu(hearth.dicom_port)  # the limit is real: the house is full
    assert refused.returncode != 0
    for s in held:
        s.close()
    # Without the SCP's connection-close handler each slot is held for the ACSE timeout (300 s)
    _wait_active(hearth, lambda n: n == 0)
    result = echoscu(hearth.dicom_port)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stalled_and_silent_peers_are_disconnected(hearth) -> None:  # type: ignore[no-untyped-def]
    _wait_active(hearth, lambda n: n == 0)
    stalled = [_stalled(hearth.dicom_port) for _ in range(MAX_ASSOCIATIONS - 1)]
    scu = AE(ae_title="SILENT")
    scu.add_requested_context(Verification)
    silent = scu.associate("127.0.0.1", hearth.dicom_port, ae_title="HEARTH")
    try:
        assert silent.is_established
        for s in stalled:  # the network timeout ends a read stalled mid-PDU
            assert _closed_by_server(s)
        deadline = time.monotonic() + HANG_GUARD
        while silent.is_established:  # an association with nothing to say is aborted
            assert time.monotonic() < deadline, "the silent association is still up"
            time.sleep(0.05)
        assert silent.is_aborted
        _wait_active(hearth, lambda n: n == 0)
        result = echoscu(hearth.dicom_port)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        for s in stalled:
            s.close()
        if silent.is_established:
            silent.abort()
