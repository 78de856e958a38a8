"""$delivery-problems — ``GET [base]/$delivery-problems`` (administrators): everything Hearth
could not deliver, in one list, newest first — final reports whose delivery failed (the case's
``REPORT_FAILED``), e-mails to patients the SMTP server did not take (still retried by
``hearth worker``), HL7 v2 messages the receiver rejected or never acknowledged (dead letters of
the outbound queue), HL7 v2 messages received and not applied (inbound dead letters: an
unsupported message type, a server fault; fhir_server/hl7v2/dead_letter.py) and AI results whose DICOM SR / Secondary Capture push to the PACS kept
failing. Each is a ``problem`` part of a Parameters resource: ``kind``, ``target`` (what to
retry: the Task, Communication or Observation), ``subject``, ``reason``, ``when``, ``attempts``
and ``retry`` (whether ``$retry-delivery`` applies; an e-mail is retried by the worker's next
pass on its own)."""

from __future__ import annotations

from fhir_server.dicom import ai_export
from fhir_server.hl7v2 import dead_letter, outbound
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import ADMIN, Operation
from resources.jobs import queue
from resources.storage.repository import Unit
from resources.storage.store import instant
from workflow.definitions import STEP_SYSTEM
from workflow.messages import EMAIL_MODE

MAX = 500


def _part(name: str, key: str, value: object) -> dict:
    return {"name": name, key: value}


def problem(
    kind: str,
    target: str,
    reason: str,
    when: str | None,
    *,
    subject: str | None = None,
    attempts: int | None = None,
    retry: bool = True,
) -> dict:
    parts = [
        _part("kind", "valueCode", kind),
        _part("target", "valueReference", {"reference": target}),
        _part("reason", "valueString", reason or "no reason recorded"),
        _part("retry", "valueBoolean", retry),
    ]
    if subject:
        parts.append(_part("subject", "valueReference", {"reference": subject}))
    if when:
        parts.append(_part("when", "valueInstant", when))
    if attempts is not None:
        parts.append(_part("attempts", "valueInteger", attempts))
    return {"name": "problem", "part": parts}


def gather(ctx: Context) -> list[tuple[str, dict]]:
    """(when, problem part) of every open delivery problem."""

    def read(u: Unit) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        reports = u.read_many(
            u.match(
                "Task",
                [("code", f"{STEP_SYSTEM}|report-delivery"), ("status", "failed")],
                limit=MAX,
            )  # fmt: skip
        )
        for t in reports:
            r = t.resource
            case = (r.get("partOf") or [{}])[0].get("reference", "")
            when = r.get("lastModified") or instant(t.last_updated)
            reason = (r.get("statusReason") or {}).get("text", "")
            out.append((when, problem("report-delivery", case or t.ref, reason, when, subject=(r.get("for") or {}).get("reference"))))  # fmt: skip
        hl7 = ",".join(f"{outbound.CODE_SYSTEM}|{c}" for c in outbound.CODES.values())
        for t in u.read_many(u.match("Task", [("code", hl7), ("status", "failed")], limit=MAX)):
            r = t.resource
            when = r.get("lastModified") or instant(t.last_updated)
            reason = (r.get("statusReason") or {}).get("text", "")
            focus = (r.get("focus") or {}).get("reference")
            out.append((when, problem("hl7v2-out", t.ref, reason, when, subject=focus)))
        inbound = f"{dead_letter.CODE_SYSTEM}|{dead_letter.CODE}"
        for t in u.read_many(u.match("Task", [("code", inbound), ("status", "failed")], limit=MAX)):
            r = t.resource
            when = r.get("lastModified") or instant(t.last_updated)
            reason = (r.get("statusReason") or {}).get("text", "")
            out.append((when, problem(dead_letter.KIND, t.ref, reason, when)))
        mails = u.read_many(
            u.match(
                "Communication", [("status", "in-progress"), ("medium", EMAIL_MODE)], limit=MAX
            )  # fmt: skip
        )
        for c in mails:
            r = c.resource
            if not r.get("statusReason"):
                continue  # waiting for its first try, not a problem yet
            when = instant(c.last_updated)
            recipient = next((x.get("reference") for x in r.get("recipient") or []), None)
            reason = r["statusReason"].get("text", "")
            out.append((when, problem("email", c.ref, reason, when, subject=recipient, retry=False)))  # fmt: skip
        return out

    found = ctx.repo.read(read)
    for job in queue.failed(ctx.repo, [ai_export.JOB_KIND]):
        found.append(
            (
                "",
                problem(
                    "dicom-ai-objects",
                    job.task_ref,
                    job.last_error or "",
                    None,
                    attempts=job.attempts,
                ),  # fmt: skip
            )
        )
    return found


def run(ctx: Context, req: FhirRequest) -> Reply:
    found = sorted(gather(ctx), key=lambda p: p[0], reverse=True)
    return Reply(200, {"resourceType": "Parameters", "parameter": [p for _, p in found]})


OPERATION = Operation(
    name="delivery-problems",
    definition="http://hearth.local/fhir/OperationDefinition/delivery-problems",
    levels=frozenset({"system"}),
    handler=run,
    methods=frozenset({"GET"}),
    permission=ADMIN,
)
