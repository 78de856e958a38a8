"""The MLLP listener: HL7 v2 over TCP with the Minimal Lower Layer Protocol (HL7 v2.5.1
Appendix C, "Lower layer protocols", C.4 MLLP): each message is framed as
``<VT 0x0B> message <FS 0x1C><CR 0x0D>`` and answered, on the same connection and in order, by
its ACK in the same framing.

asyncio owns the sockets; complete frames are applied on a pool of ``workers`` threads, so one
connection's large message never holds up another's (a connection waits for the ACK of its
message before its next one is applied: per-connection order, as MLLP requires; two messages
about the same new patient on two connections are serialised by the database, see
docs/architecture.md "Concurrency"). A frame is handed to a worker only once it is whole, so a
half-sent frame holds no worker. Bounds (docs/hl7v2.md "Limits"): a frame longer than
``max_message_bytes`` is read to its end without being kept and answered AR; a frame not
complete ``frame_seconds`` after its start byte, or a connection silent for ``idle_seconds``,
is closed with a log line. Bytes outside a frame are dropped (there is no frame to answer); a
frame that does not hold a message is answered AR. Nothing a peer sends stops the listener.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("hearth.mllp")

START, END = b"\x0b", b"\x1c\x0d"
HEAD_BYTES = 4096  # what an oversized frame keeps: its MSH, to address the AR


def frame(message: bytes) -> bytes:
    return START + message + END


def _fallback_refusal(head: bytes, reason: str) -> bytes:
    return b"MSH|^~\\&|HEARTH||||||ACK|0|P|2.5.1\rMSA|AR|\rERR|||207^Application internal error^HL70357|E\r"


class Listener:
    def __init__(
        self,
        handle: Callable[[bytes, str], bytes | list[bytes]],
        *,
        host: str,
        port: int,
        max_message_bytes: int = 8 * 1024 * 1024,
        idle_seconds: float = 300.0,
        frame_seconds: float = 60.0,
        workers: int = 4,
        refuse: Callable[[bytes, str], bytes] | None = None,
    ) -> None:
        self._handle = handle
        self._refuse = refuse or _fallback_refusal
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.idle_seconds = idle_seconds
        self.frame_seconds = frame_seconds
        # Called on the worker thread with (peer, payload) just before a message is applied:
        # an observation point for monitoring and tests.
        self.on_apply: list[Callable[[str, bytes], None]] = []
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hl7v2")
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Listener:
        """Bind (OSError when the port is taken) and serve on a background thread."""
        self._thread = threading.Thread(target=self._loop.run_forever, name="mllp", daemon=True)
        self._thread.start()
        bind = asyncio.start_server(self._client, self.host, self.port, reuse_address=True)
        try:
            self._server = asyncio.run_coroutine_threadsafe(bind, self._loop).result(timeout=30)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self._executor.shutdown(wait=False)
            self._loop.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listener on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._executor.shutdown(wait=True)
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        buf = bytearray()
        frame_started: float | None = None  # monotonic time of the open frame's start byte
        oversized: bytes | None = None  # the head of an over-long frame being read past
        loop = asyncio.get_running_loop()
        try:
            while True:
                timeout = self.idle_seconds
                if frame_started is not None:
                    left = frame_started + self.frame_seconds - time.monotonic()
                    if left <= 0:
                        log.warning(
                            "MLLP %s: frame not complete after %ss, disconnected",
                            host,
                            self.frame_seconds,
                        )
                        return
                    timeout = min(timeout, left)
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), timeout=timeout)
                except TimeoutError:
                    if frame_started is not None and timeout < self.idle_seconds:
                        continue  # the frame deadline: reported at the top of the loop
                    raise
                if not chunk:
                    return
                buf += chunk
                while True:
                    if oversized is not None:  # read past an over-long frame to its end
                        end = buf.find(END)
                        if end < 0:
                            keep = len(END) - 1  # END may straddle two reads
                            del buf[: max(0, len(buf) - keep)]
                            break
                        del buf[: end + len(END)]
                        log.warning(
                            "MLLP %s: frame over %d bytes refused (AR)",
                            host,
                            self.max_message_bytes,
                        )
                        reason = f"the message is longer than {self.max_message_bytes} bytes"
                        head, oversized, frame_started = oversized, None, None
                        ack = await loop.run_in_executor(
                            self._executor, self._safe_refuse, head, reason, host
                        )
                        writer.write(frame(ack))
                        await writer.drain()
                        continue
                    start = buf.find(START)
                    if start < 0:
                        if buf:
                            log.warning("MLLP %s: %d bytes outside a frame dropped", host, len(buf))
                        buf.clear()
                        frame_started = None
                        break
                    if start > 0:
                        log.warning("MLLP %s: %d bytes before a frame dropped", host, start)
                        del buf[:start]
                    if frame_started is None:
                        frame_started = time.monotonic()
                    end = buf.find(END, 1)
                    if end < 0 or end - 1 > self.max_message_bytes:
                        if len(buf) - 1 > self.max_message_bytes:
                            restart = buf.rfind(START, 1, HEAD_BYTES + 1)  # an unfinished frame
                            head_from = restart + 1 if restart >= 0 else 1
                            oversized = bytes(buf[head_from : head_from + HEAD_BYTES])
                            del buf[:1]  # past the start byte: the rest is read past
                            continue
                        break
                    payload = bytes(buf[1:end])
                    del buf[: end + len(END)]
                    frame_started = None
                    restart = payload.rfind(START)  # an unfinished frame before this one
                    if restart >= 0:
                        payload = payload[restart + 1 :]
                    acks = await loop.run_in_executor(self._executor, self._safe, payload, host)
                    for ack in [acks] if isinstance(acks, bytes) else acks:
                        writer.write(frame(ack))  # enhanced mode: accept, then application ACK
                    await writer.drain()
        except TimeoutError:
            log.info("MLLP %s: idle for %ss, disconnected", host, self.idle_seconds)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("MLLP %s: connection fault", host)
        finally:
            writer.close()

    def _safe(self, payload: bytes, host: str) -> bytes | list[bytes]:
        try:
            for observe in list(self.on_apply):
                observe(host, payload)
            return self._handle(payload, host)
        except Exception:  # the handler answers every message; this is the last guard
            log.exception("MLLP %s: handler fault", host)
            return b"MSH|^~\\&|HEARTH||||||ACK|0|P|2.5.1\rMSA|AE|\rERR|||207^Application internal error^HL70357|E\r"

    def _safe_refuse(self, head: bytes, reason: str, host: str) -> bytes:
        try:
            return self._refuse(head, reason)
        except Exception:
            log.exception("MLLP %s: refusal fault", host)
            return _fallback_refusal(head, reason)


def start(service, settings) -> Listener:  # type: ignore[no-untyped-def]
    """The listener of a ``Hl7v2Service`` on ``HEARTH_MLLP_PORT``: each frame is applied with
    the listener's access, within the ``HEARTH_MLLP_*`` limits."""
    from fhir_server.hl7v2.service import listener_access

    def handle(payload: bytes, peer: str) -> list[bytes]:
        outcome = service.handle(payload, listener_access(peer), peer)
        sent = outcome.frames if outcome.frames is not None else [outcome.ack]
        return [ack.encode("utf-8") for ack in sent]

    def refuse(head: bytes, reason: str) -> bytes:
        return service.refuse(head, reason).encode("utf-8")

    port = settings.mllp_port if settings.mllp_port is not None else 2575
    try:
        return Listener(
            handle,
            host=settings.host,
            port=port,
            max_message_bytes=settings.mllp_max_message_bytes,
            idle_seconds=settings.mllp_idle_timeout,
            frame_seconds=settings.mllp_frame_timeout,
            workers=settings.mllp_workers,
            refuse=refuse,
        ).start()
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen for MLLP on {settings.host}:{port} ({exc.strerror}); set "
            "HEARTH_MLLP_PORT or leave it unset to run without the listener",
        ) from exc
