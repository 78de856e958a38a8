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
from urllib.parse import parse_qsl

import hl7.containers

from fhir_server.auth import gate
from fhir_server.auth.scopes import Scopes
from fhir_server.auth.service import AuthService
from fhir_server.hl7v2 import dead_letter
from fhir_server.rest.context import Access, Context, FhirRequest
from fhir_server.rest.errors import status_of
from fhir_server.rest.interactions import transaction
from mappings import hl7v2
from mappings.hl7v2 import ack as hl7v2_ack
from mappings.hl7v2 import batch as hl7v2_batch
from mappings.hl7v2 import ordering
from mappings.hl7v2 import registry as hl7v2_registry
from mappings.hl7v2.ack import AckError
from resources.errors import FhirError, Forbidden, PreconditionFailed

log = logging.getLogger("hearth.hl7v2")
# python-hl7 logs every malformed escape sequence at ERROR (under its file path, with no
# traceback); such text is kept as sent and the message still mapped, so those lines are noise.
logging.getLogger(hl7.containers.__file__).setLevel(logging.CRITICAL)

# What the MLLP listener may write: MLLP has no credentials, so its reach is what the declared
# message types write (mappings/hl7v2/registry.py) and nothing more (and the listener binds
# HEARTH_HOST: loopback unless an operator opens it).
# How often a message about a patient's record is compared again with the stored Patient when
# another message changed it meanwhile (mappings/hl7v2/ordering.py).
ORDER_ATTEMPTS = 8
# Table 0357 codes of a message kept as a dead letter: unsupported message type / event.
UNSUPPORTED = frozenset({"200", "201"})

LISTENER_SCOPE = " ".join(f"system/{t}.cruds" for t in sorted(hl7v2_registry.writes()))


def listener_access(peer: str | None) -> Access:
    return Access(client_id=f"hl7v2-mllp:{peer or 'unknown'}", scopes=Scopes.parse(LISTENER_SCOPE))


def replay_access(by: str) -> Access:
    """What a replayed dead letter may write: what the message types declared now write (the
    registry read again: a replay is for a mapping added since), as the listener."""
    scope = " ".join(f"system/{t}.cruds" for t in sorted(hl7v2_registry.writes()))
    return Access(client_id=f"hl7v2-replay:{by}", scopes=Scopes.parse(scope))


@dataclass
class Outcome:
    ack: str  # the ACK message, segments ending in \r
    code: str  # AA, AE, AR
    control_id: str  # MSH-10 of the message ("" when unreadable)
    written: list[str]  # Type/id of what was created or updated
    reason: str = ""  # why it was not applied (AE / AR)
    dead_letter: str | None = None  # Task/id keeping the message (dead_letter.py)
    commit: str = ""  # enhanced mode: CE when the message could not be committed, else by code
    frames: list[str] | None = None  # the ACK messages to send back (handle_one), in order


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
        """Apply one message, or each message of a batch (``handle_batch``); a ``Forbidden``
        (the token may not write what a single message maps to) is raised for the HTTP edge to
        answer 403, everything else becomes an ACK."""
        if hl7v2_batch.is_batch(raw):
            return self.handle_batch(raw, access, ip)
        return self.handle_one(raw, access, ip)

    def handle_batch(self, raw: bytes | str, access: Access, ip: str | None) -> Outcome:
        """A batch or file (HL7 v2.5.1 2.10.3): each message applied on its own, in order, as
        if sent alone (a bad one is rejected alone: AE / AR in its ACK, the others applied),
        answered by a batch of their ACKs (``mappings/hl7v2/batch.py``). A batch whose BTS-1 /
        FTS-1 counts do not match what came, or that lacks its trailer, was cut short or
        spliced: none of it is applied, each message answered AR."""
        batch = hl7v2_batch.split(raw)
        wrong = hl7v2_batch.problems(batch)
        acks: list[list[str]] = []
        comments: list[str] = []
        codes: list[str] = []
        written: list[str] = []
        for part in batch.parts:
            answers, part_codes = [], []
            for text in part.messages:
                if wrong:
                    outcome = self._refuse_in_batch(text, wrong)
                else:
                    try:
                        outcome = self.handle_one(text, access, ip)
                    except Forbidden as exc:  # the others of the batch may still be applied
                        outcome = self._refuse_in_batch(text, [("", exc.diagnostics)], "AR")
                answers.append(outcome.ack)
                part_codes.append(outcome.code)
                written += outcome.written
            acks.append(answers)
            codes += part_codes
            comment = ", ".join(
                f"{part_codes.count(c)} {c}" for c in ("AA", "AE", "AR") if c in part_codes
            )
            if part.trailer is None or len(part.trailer) < 2 or not part.trailer[1].strip():
                comment += "; the batch gave no BTS-1 count to check"
            if wrong:
                comment = "nothing applied: " + "; ".join(text for _, text in wrong)
            comments.append(comment)
        if wrong:
            log.warning("HL7 v2 batch refused: %s", "; ".join(where for where, _ in wrong))
        ack = hl7v2_batch.acknowledge(
            batch,
            acks,
            comments,
            control_id=f"HEARTH{self._prefix}{next(self._ids)}",
            now=datetime.now().astimezone(),
        )
        worst = "AR" if "AR" in codes else "AE" if "AE" in codes else "AA"
        if wrong:
            worst = "AR"
        control = _field_of(batch.parts[0].header, 11) if batch.parts else ""
        return Outcome(ack, worst, control, written)

    def _refuse_in_batch(self, text: str, why: list[tuple[str, str]], code: str = "AR") -> Outcome:
        message = None
        try:
            message = hl7v2.parse(text)
        except hl7v2.Hl7Error as exc:
            err = AckError(exc.code, exc.text, exc.location)
            return Outcome(self._ack(None, "AR", [err]), "AR", "", [])
        errors = [AckError("100" if where else "207", text_, where) for where, text_ in why]
        return Outcome(self._ack(message, code, errors), code, message.control_id, [])

    def handle_one(self, raw: bytes | str, access: Access, ip: str | None) -> Outcome:
        """Apply one message; ``frames`` are the acknowledgments to send back for it: its ACK
        (original mode), or in enhanced mode (MSH-15 / MSH-16 given, HL7 v2.5.1 2.9.3) the
        accept acknowledgment (CA / CE / CR) and the application acknowledgment (AA / AE /
        AR) that MSH-15 and MSH-16 ask for (``mappings/hl7v2/ack.py`` ``frames``)."""
        said: list = []  # (message, code, errors) of the ACK built
        outcome = self._handle_one(raw, access, ip, said)
        if said:
            message, code, errors = said[-1]
            if hl7v2_ack.enhanced(message) is not None:
                outcome.commit = outcome.commit or ("CR" if code == "AR" else "CA")
            outcome.frames = hl7v2_ack.frames(
                message,
                outcome.ack,
                code,
                errors,
                commit=outcome.commit,
                accept=lambda commit, errs: self._ack(message, commit, errs),
            )
        return outcome

    def _handle_one(self, raw: bytes | str, access: Access, ip: str | None, said: list) -> Outcome:
        message = None

        def answer(message, code: str, errors: list[AckError]) -> str:  # type: ignore[no-untyped-def]
            said.append((message, code, errors))
            return self._ack(message, code, errors)

        try:
            message = hl7v2.parse(raw)
            wrong = hl7v2_ack.mode_problem(message)
            if wrong is not None:  # an accept / application ack type not in table 0155
                ack = answer(message, "AE", [wrong])
                return Outcome(ack, "AE", message.control_id, [], wrong.text, commit="CE")
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
            kept = None
            if message is not None and exc.code in UNSUPPORTED:  # replayable once mapped
                kept = dead_letter.store(self.ctx.repo, raw, message, exc.text)
            ack = answer(message, exc.ack, [err])
            return Outcome(ack, exc.ack, _cid(message), [], exc.text, kept)
        except Exception:
            log.exception("HL7 v2 message %s could not be mapped", _cid(message))
            text = "the message could not be mapped (server fault, logged)"
            kept = dead_letter.store(self.ctx.repo, raw, message, text)
            ack = answer(message, "AE", [AckError("207", text)])
            return Outcome(ack, "AE", _cid(message), [], text, kept)
        warnings = [AckError(w.code, w.text, w.location, "W") for w in mapped.warnings]
        try:
            reply, late = self._apply(mapped, access, ip)
        except Forbidden:
            raise
        except FhirError as exc:
            log.warning(
                "HL7 v2 message %s not applied: %d (%s)",
                message.control_id,
                status_of(exc),
                exc.issue_code,
            )
            # the transaction was authorized entry by entry before it failed: saying which
            # record an MRG names is not there tells the sender nothing its token cannot read
            unknown = self._unknown_target(mapped)
            if unknown is not None:
                ack = answer(message, "AE", [unknown, *warnings])
                return Outcome(ack, "AE", message.control_id, [], unknown.text)
            code = "205" if status_of(exc) == 412 else "207"
            errors = [AckError(code, exc.diagnostics), *warnings]
            ack = answer(message, "AE", errors)
            return Outcome(ack, "AE", message.control_id, [], exc.diagnostics)
        except Exception:
            log.exception("HL7 v2 message %s: transaction fault", message.control_id)
            text = "the message could not be stored (server fault, logged)"
            kept = dead_letter.store(self.ctx.repo, raw, message, text)
            ack = answer(message, "AE", [AckError("207", text)])
            return Outcome(ack, "AE", message.control_id, [], text, kept)
        if late is not None:
            log.info("HL7 v2 message %s is older than the patient's record", message.control_id)
            warnings.append(
                AckError(
                    "0",
                    f"recorded {mapped.time}, before the patient's record ({late}): only what "
                    "the record lacked was added, nothing newer was replaced",
                    "EVN^1^2" if message.one("EVN") is not None else "MSH^1^7",
                    "W",
                )
            )
        written = []
        body = reply.body if isinstance(reply.body, dict) else {}  # a transaction's Bundle
        for e in body.get("entry", []):
            location = e.get("response", {}).get("location", "")
            parts = location.split("/_history")[0].rsplit("/", 2)
            if len(parts) == 3:
                written.append(f"{parts[1]}/{parts[2]}")
        return Outcome(answer(message, "AA", warnings), "AA", message.control_id, written)

    def replay(self, task_id: str, by: str, ip: str | None) -> Outcome:
        """Run dead letter ``Task/task_id`` (``dead_letter.py``) through ``handle_one`` again,
        with what the declared message types write now (``replay_access``), and record the
        outcome on the Task: AA completes it; otherwise it stays failed with the new reason (an
        unsupported type or a server fault updates that same Task as it is kept again)."""
        raw = dead_letter.message_of(self.ctx.repo, task_id)
        try:
            outcome = self.handle_one(raw, replay_access(by), ip)
        except Forbidden as exc:
            outcome = Outcome("", "AR", "", [], exc.diagnostics)
        dead_letter.settle(self.ctx.repo, task_id, outcome.code, outcome.reason, by)
        log.info("HL7 v2 dead letter Task/%s replayed by %s: %s", task_id, by, outcome.code)
        return outcome

    def _transact(self, bundle: dict, access: Access, ip: str | None):  # type: ignore[no-untyped-def]
        req = FhirRequest(method="POST", path="", body=bundle, prefer={"return": "minimal"})
        return gate.run(
            self.ctx, self.auth, access, "transaction", req, transaction.transaction, ip
        )

    def _unknown_target(self, mapped) -> AckError | None:  # type: ignore[no-untyped-def]
        """After the message's transaction failed: AE 204 (unknown key identifier) for the
        first record the message acts on (a merged account, a moved visit:
        ``mappings/hl7v2/moves.py``) that is not stored, or 205 (duplicate key identifier)
        when its identifier names several, at the MRG field naming it (the transaction's own
        error cannot say which field was wrong); None when they are all there."""
        for target in mapped.targets:
            criteria = parse_qsl(target.query, keep_blank_values=True)

            def look(unit, res_type=target.res_type, criteria=criteria):  # type: ignore[no-untyped-def]
                return len(unit.match(res_type, criteria, limit=2))

            found = self.ctx.repo.read(look)
            if found != 1:
                code, why = ("204", "is not known") if found == 0 else ("205", "is not unique")
                text = f"{target.what} ({target.res_type}?{target.query}) {why}"
                return AckError(code, text, target.location)
        return None

    def _stored_patient(self, query: str) -> tuple[str | None, str | None]:
        """(version, last-event stamp) of the Patient ``query`` selects: (None, None) when none
        does (or several: the transaction then answers 412 itself)."""
        criteria = parse_qsl(query, keep_blank_values=True)

        def look(unit):  # type: ignore[no-untyped-def]
            found = unit.read_many(unit.match("Patient", criteria, limit=2))
            return found[0] if len(found) == 1 else None

        stored = self.ctx.repo.read(look)
        if stored is None:
            return None, None
        return str(stored.version), ordering.last_event(stored.content)

    def _apply(self, mapped, access: Access, ip: str | None):  # type: ignore[no-untyped-def]
        """Run the message's transaction in the patient's record order (mappings/hl7v2/
        ordering.py): (the reply, the record's newer stamp when the message came late, else
        None). A message about a patient's record is applied guarded by the Patient version it
        was compared with; when another message changed the Patient in between (412), it is
        compared again, up to ``ORDER_ATTEMPTS`` times."""
        update = ordering.patient_update(mapped.bundle)
        if update is None or mapped.time is None:
            return self._transact(mapped.bundle, access, ip), None
        index, query = update
        for attempt in range(ORDER_ATTEMPTS):
            version, last = self._stored_patient(query)
            if ordering.is_older(mapped.time, last):
                return self._transact(ordering.stale(mapped.bundle), access, ip), last
            try:
                bundle = ordering.guarded(mapped.bundle, index, version)
                return self._transact(bundle, access, ip), None
            except PreconditionFailed:
                if self._stored_patient(query)[0] == version or attempt == ORDER_ATTEMPTS - 1:
                    raise  # not a concurrent change of the Patient: the message's own 412
                log.info(
                    "HL7 v2 message %s: the patient changed meanwhile, compared again",
                    mapped.message.control_id,
                )
        raise AssertionError("unreachable")


def _field_of(fields: list[str] | None, n: int) -> str:
    return fields[n] if fields is not None and n < len(fields) else ""


def _cid(message) -> str:  # type: ignore[no-untyped-def]
    return message.control_id if message is not None else ""
