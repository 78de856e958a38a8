"""$retry-delivery — ``POST [base]/$retry-delivery`` with ``target`` (a reference from
``$delivery-problems``), for administrators: try again what was not delivered.

- a case (``Task/[case]``) whose report delivery failed: delivered now, as ``$deliver-report``
  does (the stored PDF is sent; the answer says ``delivered`` or ``failed`` with the reason);
- an HL7 v2 message Task (dead letter of the outbound queue): its job gets its attempts back and
  the Task is ``requested`` again; the sender sends it within its poll interval;
- an HL7 v2 message received and not applied (an inbound dead letter: unsupported message type,
  or a server fault): run again through the inbound path now, as if just received
  (fhir_server/hl7v2/dead_letter.py); ``delivered`` when applied (AA), else ``failed`` with the
  reason, the Task still failed;
- an AI result's DICOM objects (``Observation/[id]``): the export job gets its attempts back;
  ``hearth worker`` builds and pushes them again (the same UIDs: a resend replaces).

Anything else, or something that is not failed, is a 409 / 404 OperationOutcome. Returns
Parameters ``status`` (delivered | failed | queued) and ``reason``."""

from __future__ import annotations

from fhir_server.dicom import ai_export
from fhir_server.hl7v2 import dead_letter, outbound
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import ADMIN, Operation
from fhir_server.rest.workflow_http import deliver_report, parameters
from resources.errors import Conflict, Invalid, NotFound
from resources.jobs import queue
from resources.storage.repository import Unit
from resources.storage.store import instant, utcnow
from workflow import cases
from workflow.actors import roles_of


def _requeue(ctx: Context, target: str, kind: str) -> None:
    def fn(u: Unit) -> None:
        jobs = [j for j in queue.jobs_for_task(u, target) if j.kind == kind]
        failed = [j for j in jobs if j.state == queue.FAILED]
        if not failed:
            raise Conflict(f"{target} has no failed delivery to retry")
        for job in failed:
            queue.requeue(u, job.id)
        if target.startswith("Task/"):
            task = u.read("Task", target.removeprefix("Task/")).resource
            task.pop("statusReason", None)
            task.update(
                status="requested",
                businessStatus={"text": "retry requested by an administrator"},
                lastModified=instant(utcnow()),
            )
            u.update("Task", task["id"], task)

    ctx.repo.run(fn)


def run(ctx: Context, req: FhirRequest) -> Reply:
    target = req.params.reference("target", required=True) or ""
    res_type, _, res_id = target.partition("/")
    if res_type not in ("Task", "Observation") or not res_id:
        raise Invalid(f"target must be a Task or Observation from $delivery-problems, not {target!r}")  # fmt: skip
    if res_type == "Observation":
        ctx.repo.read(lambda u: u.read("Observation", res_id))  # 404 when unknown
        _requeue(ctx, target, ai_export.JOB_KIND)
        return Reply(200, parameters(status="queued"))
    task = ctx.repo.read(lambda u: u.read("Task", res_id)).resource
    codes = {c.get("code") for c in (task.get("code") or {}).get("coding") or []}
    if dead_letter.is_dead_letter(task):
        service = ctx.services.get("hl7v2")
        if service is None:
            raise Conflict("this server does not take HL7 v2 messages")
        access = ctx.access
        by = (access.username or access.client_id) if access is not None else "an administrator"
        outcome = service.replay(res_id, by, None)
        status = "delivered" if outcome.code == "AA" else "failed"
        return Reply(200, parameters(status=status, reason=outcome.reason or None, ack_code=outcome.code))  # fmt: skip
    if codes & set(outbound.CODES.values()):
        _requeue(ctx, target, outbound.KIND)
        return Reply(200, parameters(status="queued"))
    if not task.get("partOf"):  # a case: retry its report delivery step
        steps = ctx.repo.read(lambda u: [s.resource for s in cases.steps_of(u, res_id)])
        if any("system" in roles_of(s) for s in steps):
            done = deliver_report(ctx, res_id)
            return Reply(200, parameters(status=done.status, reason=done.reason))
    raise NotFound(f"{target} is not something whose delivery can be retried")


OPERATION = Operation(
    name="retry-delivery",
    definition="http://hearth.local/fhir/OperationDefinition/retry-delivery",
    levels=frozenset({"system"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=ADMIN,
)
