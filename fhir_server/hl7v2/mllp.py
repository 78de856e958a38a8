"""The MLLP listener: HL7 v2 over TCP with the Minimal Lower Layer Protocol (HL7 v2.5.1
Appendix C, "Lower layer protocols", C.4 MLLP): each message is framed as
``<VT 0x0B> message <FS 0x1C><CR 0x0D>`` and answered, on the same connection and in order, by
its ACK in the same framing.

asyncio owns the sockets; the messages are applied one at a time on a single worker thread (so
two messages about the same new patient never race each other). Bytes outside a frame are
dropped (there is no frame to answer); a frame that does not hold a message is answered AR; a
peer that goes quiet is disconnected after ``idle_seconds``; an over-long frame closes the
connection. Nothing a peer sends stops the listener.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("hearth.mllp")

START, END = b"\x0b", b"\x1c\x0d"


def frame(message: bytes) -> bytes:
    return START + message + END


class Listener:
    def __init__(
        self,
        handle: Callable[[bytes, str], bytes],
        *,
        host: str,
        port: int,
        max_message_bytes: int = 16 * 1024 * 1024,
        idle_seconds: float = 300.0,
    ) -> None:
        self._handle = handle
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.idle_seconds = idle_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hl7v2")
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
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=self.idle_seconds)
                if not chunk:
                    return
                buf += chunk
                while True:
                    start = buf.find(START)
                    if start < 0:
                        if buf:
                            log.warning("MLLP %s: %d bytes outside a frame dropped", host, len(buf))
                        buf.clear()
                        break
                    if start > 0:
                        log.warning("MLLP %s: %d bytes before a frame dropped", host, start)
                        del buf[:start]
                    end = buf.find(END, 1)
                    if end < 0:
                        if len(buf) > self.max_message_bytes:
                            log.warning(
                                "MLLP %s: frame over %d bytes", host, self.max_message_bytes
                            )
                            return
                        break
                    payload = bytes(buf[1:end])
                    del buf[: end + len(END)]
                    restart = payload.rfind(START)  # an unfinished frame before this one
                    if restart >= 0:
                        payload = payload[restart + 1 :]
                    loop = asyncio.get_running_loop()
                    ack = await loop.run_in_executor(self._executor, self._safe, payload, host)
                    writer.write(frame(ack))
                    await writer.drain()
        except TimeoutError:
            log.info("MLLP %s: idle for %ss, disconnected", host, self.idle_seconds)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("MLLP %s: connection fault", host)
        finally:
            writer.close()

    def _safe(self, payload: bytes, host: str) -> bytes:
        try:
            return self._handle(payload, host)
        except Exception:  # the handler answers every message; this is the last guard
            log.exception("MLLP %s: handler fault", host)
            return b"MSH|^~\\&|HEARTH||||||ACK|0|P|2.5.1\rMSA|AE|\rERR|||207^Application internal error^HL70357|E\r"


def start(service, host: str, port: int) -> Listener:  # type: ignore[no-untyped-def]
    """The listener of a ``Hl7v2Service``: each frame is applied with the listener's access."""
    from fhir_server.hl7v2.service import listener_access

    def handle(payload: bytes, peer: str) -> bytes:
        outcome = service.handle(payload, listener_access(peer), peer)
        return outcome.ack.encode("utf-8")

    try:
        return Listener(handle, host=host, port=port).start()
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen for MLLP on {host}:{port} ({exc.strerror}); set HEARTH_MLLP_PORT "
            "or leave it unset to run without the listener",
        ) from exc
