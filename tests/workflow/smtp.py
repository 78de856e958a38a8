"""A real SMTP server for tests: aiosmtpd on a free loopback port, STARTTLS required, with a
throwaway self-signed certificate (the development mailbox's, fhir_server/runtime/mailsink.py)
the client trusts through HEARTH_SMTP_CA_FILE; messages are kept in memory for the test."""

from __future__ import annotations

import email
import ssl
import threading
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from aiosmtpd.controller import Controller

from fhir_server.runtime.mailsink import self_signed
from tests.servers import free_port


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    tls_sessions: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
            self.tls_sessions.append(session.ssl is not None)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if address in m.get("To", "")]


@dataclass
class SmtpServer:
    port: int
    ca_file: Path
    inbox: Inbox
    controller: Controller

    def stop(self) -> None:
        self.controller.stop()


def start_smtp(folder: Path) -> SmtpServer:
    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    return SmtpServer(port, cert, inbox, controller)
