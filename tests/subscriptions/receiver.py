"""A real HTTP receiver for rest-hook notifications, on a loopback port, in a thread; it can be
taken down (connections refused) and brought back on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def kind(self) -> str:
        return self.headers.get("x-hearth-notification", "")

    @property
    def event_number(self) -> int:
        return int(self.headers.get("x-hearth-event-number", "0"))

    @property
    def bundle(self) -> dict:
        return json.loads(self.body)

    @property
    def focus(self) -> dict | None:
        entries = self.bundle["entry"]
        return entries[1]["resource"] if len(entries) > 1 else None


@dataclass
class Receiver:
    port: int = 0
    got: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                item = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                    time.monotonic(),
                )  # fmt: skip
                with receiver.cond:
                    receiver.got.append(item)
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[Received]:
        with self.cond:
            return [r for r in self.got if r.kind == "event-notification"]

    def wait(self, test, timeout: float = 60.0) -> list[Received]:  # type: ignore[no-untyped-def]
        """Block until ``test(received)`` holds; fail with what came when it never does."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not test(self.got):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"never received what was expected: {self.got!r}")
                self.cond.wait(left)
            return list(self.got)
