"""$ai-analyze — run Hearth's AI on a stored resource and answer with the analysis Task.

``POST [base]/ImagingStudy/[id]/$ai-analyze`` (chest X-ray pneumonia), ``POST
[base]/Media/[id]/$ai-analyze`` (skin lesion photo; a DICOM CR/DX Media: chest X-ray),
``POST [base]/Patient/[id]/$ai-analyze`` (PLCOm2012 lung-cancer risk). An optional Parameters
body with ``analysis`` (valueCode) picks the analysis explicitly. Which analyses apply to which
resource, and which is the default, each model declares (``inference/models/``).

The Task is created once per analysis, focus and model version (asking again returns it) — and,
for PLCOm2012, per version of the record entries it reads (a changed or added answer or
Observation makes a new one: ``inference/tasks.py``). With
``Prefer: respond-async`` the reply is 202 with ``Content-Location`` → the Task, which a worker
(``hearth worker``) carries out; otherwise the analysis runs now and the reply is 200 with the
completed — or failed, with ``statusReason`` — Task.
"""

from __future__ import annotations

import time

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.runtime.ai import analyzer
from inference import tasks
from inference.registry import ANALYSES, default_analysis, operation_inputs
from inference.worker_name import worker_name
from resources.errors import Invalid, NotFound
from resources.jobs import queue
from resources.storage.repository import Unit

# resource type -> the analysis kinds offered on it (the models' operation_inputs)
ALLOWED = operation_inputs()
SYNC_WAIT_SECONDS = 60.0


def _requested_analysis(req: FhirRequest, focus: dict) -> str:
    kind = req.params.text("analysis", fhir_type="code")
    if kind is not None:
        if kind not in ANALYSES:
            raise Invalid(
                f"unknown analysis {kind!r}; known: {sorted(ANALYSES)}",
                expression=["Parameters.parameter.where(name='analysis').value"],
            )
        return kind
    kind = default_analysis(str(req.res_type), focus)
    if kind is None:
        raise Invalid(f"no analysis applies to this {req.res_type} by default; name one")
    return kind


def run(ctx: Context, req: FhirRequest) -> Reply:
    res_type, res_id = str(req.res_type), str(req.res_id)
    focus_ref = f"{res_type}/{res_id}"

    def start(u: Unit) -> tuple[dict, str]:
        focus = u.read(res_type, res_id).resource
        kind = _requested_analysis(req, focus)
        if kind not in ALLOWED[res_type]:
            raise Invalid(f"{kind} does not apply to a {res_type}")
        subject = focus_ref if res_type == "Patient" else focus.get("subject", {}).get("reference")
        result = tasks.request(u, kind, focus_ref, subject, tasks.version_for(kind))
        return result.stored.resource, result.stored.res_id

    task, task_id = ctx.repo.run(start)
    location = f"{ctx.base}/Task/{task_id}"
    hidden = _hidden(ctx, task_id)
    # The server's own reads of the Task it runs (the request's view may not see it: hidden).
    own = ctx.services.get("repo", ctx.repo)
    if req.prefer.get("respond-async") is not None or task["status"] in ("completed", "failed"):
        status = 202 if task["status"] not in ("completed", "failed") else 200
        return _reply(status, task, location, hidden)
    jobs = queue.for_task(ctx.repo, f"Task/{task_id}")
    ai = analyzer(ctx, f"api:{worker_name()}")
    job = queue.claim_job(ctx.repo, jobs[0].id, ai.worker) if jobs else None
    if job is not None:
        ai.run([job])
    else:  # a worker holds it: wait a little for its result
        deadline = time.monotonic() + SYNC_WAIT_SECONDS
        while time.monotonic() < deadline:
            current = own.read(lambda u: u.read("Task", task_id)).content or {}
            if current.get("status") in ("completed", "failed"):
                break
            time.sleep(0.25)
    final = own.read(lambda u: u.read("Task", task_id)).content
    done = final is not None and final.get("status") in ("completed", "failed")
    return _reply(200 if done else 202, final, location, hidden)


def _reply(status: int, task: dict | None, location: str, hidden: bool) -> Reply:
    if not hidden:
        return Reply(status, task, {"Content-Location": location})
    # A patient token sees neither the analysis Task nor its result until a clinician has
    # verified it (docs/security.md, "What a patient token sees"): the answer says whether the
    # analysis is done, not what it found.
    text = "done" if status == 200 else "requested"
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"the analysis is {text}; its result is shown once a clinician "
                "has verified it",
            }
        ],
    }
    return Reply(status, outcome)


def _hidden(ctx: Context, task_id: str) -> bool:
    """Whether the caller may not read the analysis Task (a patient token: it is labelled
    ``unverified-ai``, resources.search.visibility)."""
    try:
        ctx.repo.read(lambda u: u.read("Task", task_id))
    except NotFound:
        return True
    return False


OPERATION = Operation(
    name="ai-analyze",
    definition="http://hearth.local/fhir/OperationDefinition/ai-analyze",
    levels=frozenset({"instance"}),
    handler=run,
    types=frozenset(ALLOWED),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("r"),  # reading the focus; the Task and results derive from it
)
