"""A worker killed in the middle of a delivery loses nothing: its lease runs out, the next worker
sends the unacknowledged event again (at-least-once, same event number) and then the rest, in
order. Each backend gets its own Hearth, without the shared worker."""

from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.servers import database_url, start_server
from tests.subscriptions.conftest import start_worker, stop_worker
from tests.subscriptions.test_rest_hook import LOINC, code, observation, subscription, wait_status


class HangingReceiver:
    """Answers 200, except that the first event notification is held until ``release``."""

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("X-Hearth-Notification") == "event-notification":
                    number = int(self.headers["X-Hearth-Event-Number"])
                    with receiver.cond:
                        receiver.numbers.append(number)
                        receiver.cond.notify_all()
                        first = len(receiver.numbers) == 1
                    if first:
                        receiver.arrived.set()
                        receiver.release.wait(60)
                        return  # no answer: the worker that sent it is gone
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, test, timeout: float = 90) -> list[int]:  # type: ignore[no-untyped-def]
        with self.cond:
            if not self.cond.wait_for(lambda: test(self.numbers), timeout):
                raise AssertionError(f"received only {self.numbers}")
            return list(self.numbers)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def bare_hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"subs-kill-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    running = start_server(
        request.param, url, data_dir=tmp / "data",
        subscription_allow_http=True, subscription_endpoints="http://127.0.0.1:",
    )  # fmt: skip
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    yield running
    running.stop()
    cleanup()


def test_worker_killed_mid_delivery_loses_nothing(bare_hearth, monkeypatch):
    # short leases and timeouts, so the next worker takes over within seconds
    monkeypatch.setenv("HEARTH_WORKER_LEASE_SECONDS", "3")
    monkeypatch.setenv("HEARTH_SUBSCRIPTION_TIMEOUT_SECONDS", "1")
    rx = HangingReceiver()
    first = start_worker(bare_hearth, bare_hearth.data_dir)
    second = None
    try:
        with httpx.Client(
            base_url=bare_hearth.fhir, headers=bare_hearth.headers, timeout=60
        ) as fhir:
            wanted = code()
            sub_id = fhir.post(
                "/Subscription", json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}")
            ).json()["id"]
            wait_status(fhir, sub_id, "active")
            fhir.post("/Observation", json=observation(wanted))
            assert rx.arrived.wait(60), "the first event never reached the receiver"
            os.killpg(first.pid, signal.SIGKILL)  # mid-delivery: the request is unanswered
            first.wait(30)
            for _ in range(2):
                fhir.post("/Observation", json=observation(wanted))
            second = start_worker(bare_hearth, bare_hearth.data_dir)
            numbers = rx.wait(lambda got: 3 in got)
        # event 1 again (at-least-once), then every later one in order
        assert numbers == [1, 1, 2, 3]
    finally:
        rx.stop()
        if first.poll() is None:
            stop_worker(first)
        if second is not None:
            stop_worker(second)
