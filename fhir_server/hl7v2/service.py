"""One HL7 v2 message in, one ACK out: parse and map it (``mappings.hl7v2``), run the mapped
transaction Bundle through the same gate and transaction code as ``POST /fhir`` (authorized
entry by entry, audited, all-or-nothing), and answer with an original-mode acknowledgment:
AA (applied), AE (read but not applied: nothing was written), AR (unsupported or unreadable).

Never raises for anything a sender can put in a message; a fault becomes AE 207 and is logged.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import hl7.containers

from fhir_server.auth import gate
from fhir_server.auth.scopes import Scopes
from fhir_server.auth.service import AuthService
from fhir_server.rest.context import Access, Context, FhirRequest
from fhir_server.rest.errors import status_of
from fhir_server.rest.interactions import transaction
from mappings import hl7v2
from mappings.hl7v2 import registry as hl7v2_registry
from mappings.hl7v2.ack import AckError
from resources.errors import FhirError, Forbidden

log = logging.getLogger("hearth.hl7v2")
# python-hl7 logs every malformed escape sequence at ERROR (under its file path, with no
# traceback); such text is kept as sent and the message still mapped, so those lines are noise.
logging.getLogger(hl7.containers.__file__).setLevel(logging.CRITICAL)

# What the MLLP listener may write: MLLP has no credentials, so its reach is what the declared
# message types write (mappings/hl7v2/registry.py) and nothing more (and the listener binds
# HEARTH_HOST: loopback unless an operator opens it).
LISTENER_SCOPE = " ".join(f"system/{t}.cruds" for t in sorted(hl7v2_registry.writes()))


def listener_access(peer: str | None) -> Access:
    return Access(client_id=f"hl7v2-mllp:{peer or 'unknown'}", scopes=Scopes.parse(LISTENER_SCOPE))


@dataclass
class Outcome:
    ack: str  # the ACK message, segments ending in \r
    code: str  # AA, AE, AR
    control_id: str  # MSH-10 of the message ("" when unreadable)
    written: list[str]  # Type/id of what was created or updated


def _server_tz() -> str:
    offset = -time.altzone if time.daylight and time.localtime().tm_isdst else -time.timezone
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"


class Hl7v2Service:
    def __init__(self, ctx: Context, auth: AuthService) -> None:
        self.ctx = ctx
        self.auth = auth
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    def _ack(self, message, code: str, errors: list[AckError]) -> str:  # type: ignore[no-untyped-def]
        return hl7v2.build(
            message,
            code,
            errors,
            control_id=f"HEARTH{self._prefix}{next(self._ids)}",
            now=datetime.now().astimezone(),
        )

    def refuse(self, head: bytes, reason: str) -> str:
        """The AR that answers a message refused unread (``reason``), addressed from its MSH
        segment when ``head`` (the start of the message) holds a readable one."""
        message = None
        msh = bytes(head).replace(b"\n", b"\r").split(b"\r", 1)[0]
        try:
            message = hl7v2.parse(msh + b"\r")
        except Exception:  # noqa: BLE001 - no usable MSH: the AR is sent unaddressed
            message = None
        log.warning("HL7 v2 message %s refused: %s", _cid(message), reason)
        return self._ack(message, "AR", [AckError("207", reason)])

    def handle(self, raw: bytes | str, access: Access, ip: str | None) -> Outcome:
        """Apply one message; a ``Forbidden`` (the token may not write what the message maps
        to) is raised for the HTTP edge to answer 403, everything else becomes an ACK."""
        message = None
        try:
            message = hl7v2.parse(raw)
            mapped = hl7v2.map_parsed(message, server_tz=_server_tz())
        except hl7v2.Hl7Error as exc:
            # the error's text quotes the message (a segment id, a field's value): not logged
            log.warning(
                "HL7 v2 message %s: %s %s at %s",
                _cid(message) or "-",
                exc.ack,
                exc.code,
                exc.location,
            )
            err = AckError(exc.code, exc.text, exc.location)
            return Outcome(self._ack(message, exc.ack, [err]), exc.ack, _cid(message), [])
        except Exception:
            log.exception("HL7 v2 message %s could not be mapped", _cid(message))
            err = AckError("207", "the message could not be mapped (server fault, logged)")
            return Outcome(self._ack(message, "AE", [err]), "AE", _cid(message), [])
        warnings = [AckError(w.code, w.text, w.location, "W") for w in mapped.warnings]
        req = FhirRequest(method="POST", path="", body=mapped.bundle, prefer={"return": "minimal"})
        try:
            reply = gate.run(
                self.ctx, self.auth, access, "transaction", req, transaction.transaction, ip
            )
        except Forbidden:
            raise
        except FhirError as exc:
            log.warning(
                "HL7 v2 message %s not applied: %d (%s)",
                message.control_id,
                status_of(exc),
                exc.issue_code,
            )
            code = "205" if status_of(exc) == 412 else "207"
            errors = [AckError(code, exc.diagnostics), *warnings]
            return Outcome(self._ack(message, "AE", errors), "AE", message.control_id, [])
        except Exception:
            log.exception("HL7 v2 message %s: transaction fault", message.control_id)
            err = AckError("207", "the message could not be stored (server fault, logged)")
            return Outcome(self._ack(message, "AE", [err]), "AE", message.control_id, [])
        written = []
        body = reply.body if isinstance(reply.body, dict) else {}  # a transaction's Bundle
        for e in body.get("entry", []):
            location = e.get("response", {}).get("location", "")
            parts = location.split("/_history")[0].rsplit("/", 2)
            if len(parts) == 3:
                written.append(f"{parts[1]}/{parts[2]}")
        return Outcome(self._ack(message, "AA", warnings), "AA", message.control_id, written)


def _cid(message) -> str:  # type: ignore[no-untyped-def]
    return message.control_id if message is not None else ""
