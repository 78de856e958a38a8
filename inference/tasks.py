"""Analysis requests as FHIR Tasks, each with its job on the work queue.

A request is a Task (``code`` = the analysis kind, ``focus`` = the ImagingStudy, Media or
Patient, ``for`` = the patient, ``owner`` = the model's Device, status ``requested``) created
with an identifier ``kind:focus:model-version``: asking again for the same analysis by the same
model returns the same Task, so a result is never duplicated. A formula computed from the record
(PLCOm2012) also keys on the versions of the record entries it reads (``Formula.inputs``: the
Patient, its questionnaire answers and Observations), listed as the Task's ``input``: once an
input is added, changed or deleted, asking again makes a new Task; while none is, the same one. The Task and its queue job are
written in one transaction. Status then follows FHIR's Task state machine:
requested → in-progress → completed | failed (with ``statusReason``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from inference import registry
from inference.codes import TASK_REASON, analysis_concept
from inference.spec import Formula
from resources.jobs import queue
from resources.search.visibility import with_unverified_label
from resources.storage.repository import Unit, WriteResult
from resources.storage.store import instant, utcnow

JOB_KIND = "ai-analysis"
TASK_IDENTIFIER = "http://hearth.local/fhir/sid/ai-task"


def version_for(kind: str) -> str:
    """The version of what performs ``kind`` now (the model's weights, or the formula's)."""
    return registry.BY_ANALYSIS[kind].version()


def task_key(kind: str, focus: str, version: str, inputs: Sequence[str] = ()) -> str:
    """``kind:focus:version``, and for an analysis of record entries a digest of their versioned
    references (``:inputs-<sha256[:16]>``)."""
    key = f"{kind}:{focus}:{version}"
    if inputs:
        digest = hashlib.sha256("\n".join(sorted(inputs)).encode()).hexdigest()[:16]
        key = f"{key}:inputs-{digest}"
    return key


def record_inputs(u: Unit, kind: str, focus: str) -> list[str]:
    """The versioned references of the record entries ``kind`` reads for ``focus`` now (a
    formula that declares them); none for an image analysis (its input is the focus itself)."""
    spec = registry.BY_ANALYSIS.get(kind)
    if isinstance(spec, Formula) and spec.inputs is not None:
        return spec.inputs(u, focus)
    return []


def request(
    u: Unit,
    kind: str,
    focus: str,
    subject: str | None,
    version: str,
    *,
    based_on: Sequence[str] = (),
    part_of: str | None = None,
    requester: str | None = None,
) -> WriteResult:
    """Create (or find) the Task for ``kind`` on ``focus`` and enqueue its job. A request made
    for a workflow case (``part_of`` → the case Task) is that case's own Task."""
    body = task_body(
        kind,
        focus,
        subject,
        version,
        based_on=based_on,
        part_of=part_of,
        requester=requester,
        inputs=record_inputs(u, kind, focus),
    )
    key = body["identifier"][0]["value"]
    criteria = [("identifier", f"{TASK_IDENTIFIER}|{key}")]
    # The server's own look-up first: a patient-context request does not see the Task (it is
    # labelled), and its conditional create alone would make a second one.
    found = u.match("Task", criteria, limit=1)
    if found:
        return WriteResult(u.read_many(found)[0], "exists")
    result = u.create(body, if_none_exist=criteria)
    queue.enqueue(u, JOB_KIND, key, result.stored.ref)
    return result


def task_body(
    kind: str,
    focus: str,
    subject: str | None,
    version: str,
    *,
    based_on: Sequence[str] = (),
    part_of: str | None = None,
    requester: str | None = None,
    inputs: Sequence[str] = (),
) -> dict:
    """The Task that requests ``kind`` on ``focus`` (see ``request``); ``inputs``: the versioned
    references of the record entries it reads (``record_inputs``)."""
    spec = registry.BY_ANALYSIS.get(kind)
    if spec is None:
        raise ValueError(f"unknown analysis {kind!r}")
    key = task_key(kind, focus, version, inputs)
    if part_of:  # a case's own analysis: its results are recorded on that case
        key = f"{key}:{part_of}"
    body = {
        "resourceType": "Task",
        "identifier": [{"system": TASK_IDENTIFIER, "value": key}],
        "basedOn": [{"reference": r} for r in based_on],
        "partOf": [{"reference": part_of}] if part_of else [],
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": analysis_concept(spec),
        "focus": {"reference": focus},
        "for": {"reference": subject} if subject else None,
        "authoredOn": instant(utcnow()),
        "requester": {"reference": requester} if requester else None,
        "owner": {"reference": f"Device/{version}"},
        "input": [
            {"type": {"text": "record entry"}, "valueReference": {"reference": ref}}
            for ref in sorted(inputs)
        ],
    }
    # Its outputs and business status name the result: a patient token does not see it until a
    # clinician verified the result (docs/security.md, "What a patient token sees").
    return with_unverified_label({k: v for k, v in body.items() if v not in (None, [])})


def started(task: dict) -> dict:
    return {**task, "status": "in-progress", "executionPeriod": {"start": instant(utcnow())}}


def completed(
    task: dict, outputs: Sequence[tuple[str, str]], business: str, *, note: str | None = None
) -> dict:
    """``outputs``: (what, reference) pairs, e.g. ("result", "Observation/ai-…")."""
    period = dict(task.get("executionPeriod") or {})
    period["end"] = instant(utcnow())
    out = {k: v for k, v in task.items() if k != "statusReason"}
    if note:
        out["note"] = [*out.get("note", []), {"text": note}]
    return {
        **out,
        "status": "completed",
        "businessStatus": {"text": business},
        "executionPeriod": period,
        "output": [
            {"type": {"text": what}, "valueReference": {"reference": ref}} for what, ref in outputs
        ],
    }


def failed(task: dict, reason: str) -> dict:
    period = dict(task.get("executionPeriod") or {})
    period["end"] = instant(utcnow())
    return {
        **task,
        "status": "failed",
        "statusReason": {
            "coding": [{"system": TASK_REASON, "code": "input-rejected"}],
            "text": reason[:1000],
        },
        "executionPeriod": period,
    }
