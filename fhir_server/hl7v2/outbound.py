"""HL7 v2 out: what Hearth records is sent to the hospital's receiver over MLLP
(``HEARTH_HL7_OUT_HOST``/``_PORT``), durably (docs/hl7v2.md "Outbound"): ORU^R01 for a final
DiagnosticReport, SIU^S12/S14/S15 for an Appointment booked / changed / cancelled, ADT^A04/A08
for a Patient registered / changed (``HEARTH_HL7_OUT_MESSAGES`` picks them).

When such a write happens (not one an HL7 v2 message brought in: ``meta.source``
``urn:hearth:hl7v2:sender:…``), a write hook adds, in the same transaction, a Task (``code``
hl7v2-oru-r01 / hl7v2-siu / hl7v2-adt, ``focus`` the resource's version, ``input`` the message
type) and its job on the work queue (``resources/jobs/queue.py``, kind ``hl7v2-out``, keyed by that
version: written once). A sender thread in the server claims the jobs, builds the message
(``mappings/hl7v2/outbound.py``, hl7apy), sends it and reads the receiver's ACK: AA (or CA)
completes the Task; AE, no answer or no connection is retried with exponential back-off
(``HEARTH_HL7_OUT_BACKOFF`` doubling) up to ``HEARTH_HL7_OUT_MAX_ATTEMPTS``; AR (the receiver
rejects it) or the last attempt fails the Task, its ``statusReason`` saying why, and the job
stays ``failed``: the dead letters are ``Task?code=…&status=failed``.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from datetime import datetime, timedelta

from fhir_server.runtime.settings import Settings
from mappings.hl7v2 import outbound, parse
from mappings.hl7v2.segments import SOURCE
from resources.jobs import queue
from resources.storage.repository import Repository, Unit, WriteResult
from resources.storage.store import instant, utcnow

log = logging.getLogger("hearth.hl7v2.out")

KIND = "hl7v2-out"
TASK_SYSTEM = "http://hearth.local/fhir/sid/hl7v2-out"
CODE_SYSTEM = "http://hearth.local/fhir/CodeSystem/task-code"
TASK_CODE = "hl7v2-oru-r01"
START, END = b"\x0b", b"\x1c\x0d"


# Task.code of each outbound message (CODE_SYSTEM)
CODES = {"ORU": "hl7v2-oru-r01", "SIU": "hl7v2-siu", "ADT": "hl7v2-adt"}


def _event(result: WriteResult) -> tuple[str, str] | None:
    """(family, MSH-9 message^event) a write calls for, or None."""
    stored = result.stored
    content = stored.content or {}
    if result.status not in ("created", "updated"):
        return None
    if content.get("meta", {}).get("source", "").startswith(SOURCE):
        return None  # a hospital system sent it in: not echoed back
    if stored.res_type == "DiagnosticReport" and content.get("status") == "final":
        return "ORU", "ORU^R01"
    if stored.res_type == "Appointment":
        if content.get("status") in ("cancelled", "entered-in-error", "noshow"):
            return "SIU", "SIU^S15"
        return "SIU", "SIU^S12" if result.status == "created" else "SIU^S14"
    if stored.res_type == "Patient":
        return "ADT", "ADT^A04" if result.status == "created" else "ADT^A08"
    return None


def hook(settings: Settings):  # type: ignore[no-untyped-def]
    """The write hook that queues the outbound message a write calls for: ORU^R01 for each
    final DiagnosticReport version, SIU^S12/S14/S15 for an Appointment booked / changed /
    cancelled, ADT^A04/A08 for a Patient registered / changed (``HEARTH_HL7_OUT_MESSAGES``)."""
    wanted = {m.strip().upper() for m in settings.hl7_out_messages.split(",") if m.strip()}

    def on_write(u: Unit, result: WriteResult) -> None:
        found = _event(result)
        if found is None or found[0] not in wanted:
            return
        family, kind = found
        stored = result.stored
        key = f"{kind}:{stored.ref}/_history/{stored.version}"
        criteria = [("identifier", f"{TASK_SYSTEM}|{key}")]
        if u.match("Task", criteria, limit=1):
            return
        task = {
            "resourceType": "Task",
            "identifier": [{"system": TASK_SYSTEM, "value": key}],
            "status": "requested",
            "intent": "order",
            "code": {
                "coding": [{"system": CODE_SYSTEM, "code": CODES[family]}],
                "text": f"send {kind} to the hospital's HL7 v2 receiver",
            },
            "focus": {"reference": f"{stored.ref}/_history/{stored.version}"},
            "input": [{"type": {"text": "message"}, "valueString": kind}],
            "authoredOn": instant(utcnow()),
            "note": [{"text": f"to {settings.hl7_out_host}:{settings.hl7_out_port}"}],
        }
        created = u.create(task, if_none_exist=criteria)
        queue.enqueue(u, KIND, key, created.stored.ref, max_attempts=settings.hl7_out_max_attempts)

    return on_write


def send(message: str, host: str, port: int, timeout: float) -> str:
    """One MLLP exchange: the framed message out, the framed ACK back (its text)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(START + message.encode("utf-8") + END)
        buf = b""
        while END not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the receiver closed the connection before its ACK")
            buf += chunk
            if len(buf) > 1024 * 1024:
                raise ConnectionError("the receiver's answer is not an MLLP frame")
    start = buf.find(START)
    return buf[start + 1 : buf.find(END)].decode("utf-8", "replace")


class Sender:
    """Claims ``hl7v2-out`` jobs and sends them, one at a time, on a thread of its own."""

    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings
        self.worker = f"hl7v2-out:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sender:
        self._thread = threading.Thread(target=self._loop, name="hl7v2-out", daemon=True)
        self._thread.start()
        log.info("HL7 v2 outbound to %s:%s", self.settings.hl7_out_host, self.settings.hl7_out_port)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.hl7_out_timeout + 5)

    def _loop(self) -> None:
        lease = timedelta(seconds=self.settings.hl7_out_timeout * 2 + 30)
        while not self._stop.is_set():
            try:
                jobs = queue.claim(self.repo, [KIND], self.worker, limit=1, lease=lease)
            except Exception:  # the database is away: try again later
                log.exception("HL7 v2 outbound: cannot read the queue")
                jobs = []
            if not jobs:
                self._stop.wait(self.settings.hl7_out_poll)
                continue
            for job in jobs:
                try:
                    self.run(job)
                except Exception:
                    log.exception("HL7 v2 outbound job %s: fault", job.id)

    def _message(self, task_id: str) -> tuple[str, str]:
        def read(u: Unit) -> tuple[str, dict, dict | None, list[dict]]:
            task = u.read("Task", task_id).resource
            kind = task["input"][0]["valueString"] if task.get("input") else "ORU^R01"
            res_type, res_id, _, version = task["focus"]["reference"].split("/")
            focus = u.vread(res_type, res_id, version).resource
            if res_type == "Patient":
                return kind, focus, focus, []
            subject = focus.get("subject", {}).get("reference", "")
            if res_type == "Appointment":
                subject = next(
                    (
                        p["actor"]["reference"]
                        for p in focus.get("participant", [])
                        if p.get("actor", {}).get("reference", "").startswith("Patient/")
                    ),
                    "",
                )
            patient = u.read("Patient", subject.split("/")[1]).resource if subject else None
            observations = []
            for r in focus.get("result", []):
                parts = r.get("reference", "").split("/")
                if len(parts) == 2 and parts[0] == "Observation":
                    observations.append(u.read("Observation", parts[1]).resource)
            return kind, focus, patient, observations

        kind, focus, patient, observations = self.repo.read(read)
        control_id = f"HEARTH{uuid.uuid4().hex[:16]}"
        now = datetime.now().astimezone()
        code, event = kind.split("^")
        if code == "ADT":
            return outbound.adt(event, focus, control_id=control_id, now=now), control_id
        if code == "SIU":
            return outbound.siu(event, focus, patient, control_id=control_id, now=now), control_id
        message = outbound.oru_r01(
            focus, patient or {}, observations, control_id=control_id, now=now
        )
        return message, control_id

    def run(self, job: queue.Job) -> str:
        """Send one job's message; returns the job's new state (done, ready, failed)."""
        s = self.settings
        try:
            message, control_id = self._message(job.task_id)
        except Exception as exc:  # the report or its patient is gone: nothing to send
            log.warning("HL7 v2 outbound %s: cannot build the message (%s)", job.task_ref, exc)
            return self._failed(job, f"the message cannot be built: {type(exc).__name__}", False)
        try:
            assert s.hl7_out_host is not None
            ack = send(message, s.hl7_out_host, s.hl7_out_port, s.hl7_out_timeout)
        except (OSError, TimeoutError) as exc:
            return self._failed(job, f"no ACK from the receiver: {exc}", True)
        try:
            parsed = parse(ack)
            msa = parsed.one("MSA")
            code = msa.value(1).upper() if msa is not None else ""
            echoed = msa.value(2) if msa is not None else ""
        except Exception:
            code, echoed = "", ""
        if code in ("AA", "CA") and echoed == control_id:
            return self._done(job, control_id)
        if code in ("AA", "CA"):
            return self._failed(job, f"the ACK answers {echoed!r}, not {control_id!r}", True)
        text = msa.value(3) if code and msa is not None else ""
        reason = f"the receiver answered {code or 'no readable ACK'}" + (
            f": {text}" if text else ""
        )
        return self._failed(job, reason, retry=code not in ("AR", "CR"))

    def _done(self, job: queue.Job, control_id: str) -> str:
        def run(u: Unit) -> str:
            if not queue.finish(u, job, self.worker):
                return "lost"
            task = u.read("Task", job.task_id).resource
            task.update(
                status="completed",
                businessStatus={"text": f"ACK AA for MSH-10 {control_id}"},
                lastModified=instant(utcnow()),
            )
            u.update("Task", job.task_id, task)
            return queue.DONE

        return self.repo.run(run)

    def _failed(self, job: queue.Job, reason: str, retry: bool) -> str:
        log.warning("HL7 v2 outbound %s attempt %d: %s", job.task_ref, job.attempts, reason)
        backoff = timedelta(seconds=self.settings.hl7_out_backoff)

        def run(u: Unit) -> str:
            state = queue.fail(u, job, self.worker, reason, retry=retry, backoff=backoff)
            task = u.read("Task", job.task_id).resource
            if state == queue.FAILED:  # dead-lettered: visible as a failed Task
                task.update(status="failed", statusReason={"text": reason})
                task["businessStatus"] = {"text": f"dead letter after {job.attempts} attempt(s)"}
            else:
                task["businessStatus"] = {"text": f"retrying (attempt {job.attempts}): {reason}"}
            task["lastModified"] = instant(utcnow())
            u.update("Task", job.task_id, task)
            return state

        return self.repo.run(run)


def start(repo: Repository, settings: Settings) -> Sender | None:
    """Install the hook and start the sender when ``HEARTH_HL7_OUT_HOST`` is set."""
    if not settings.hl7_out_host:
        return None
    repo.write_hooks.append(hook(settings))
    return Sender(repo, settings).start()
