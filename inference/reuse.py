"""One image analysis per input and model version: a Task that asks for an analysis already done
(or being done) records that result instead of producing a second one.

Two Tasks ask for the same analysis when they share ``code`` (the analysis kind), ``focus`` (the
Media or ImagingStudy) and ``owner`` (the model's Device, whose id is the model version) — e.g. the
standalone analysis a skin-photo upload starts by itself and, later, the AI step of a workflow case
on that photo. The result of the earliest such Task is *the* result: the Observation (and its
Grad-CAM heatmap) it wrote. Another Task of the same analysis

* completes with the same outputs (``result`` → that Observation, ``explanation`` → that heatmap
  Media), and a note naming the Task that produced them;
* adds its own ``basedOn`` ServiceRequests (the case's order) to the Observation's ``basedOn``,
  as a new version of the Observation, so the result names every request it answers;
* waits (its job is put back on the queue, no attempt counted) while an earlier Task of the same
  analysis still has a live job — the earliest one runs the model, the others reuse its result.

PLCOm2012 risk assessments are not shared this way: they are computed from the record as it is
when each Task runs (it changes as answers are added), and ``RiskAssessment.basedOn`` is 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.codes import HEARTH_AI, HEARTH_LABEL, INTERPRETATION, UNCERTAIN
from inference.registry import MODEL_FOR_ANALYSIS
from inference.tasks import TASK_IDENTIFIER
from resources.errors import Gone, NotFound
from resources.jobs import queue
from resources.storage.repository import Unit

LIVE_TASK = ("requested", "received", "accepted", "ready", "in-progress")


@dataclass(frozen=True)
class Done:
    """An earlier Task of the same analysis that completed: its Task and its outputs."""

    task: dict
    outputs: list[tuple[str, str]]  # (what, reference), "result" first


@dataclass(frozen=True)
class Pending:
    """An earlier Task of the same analysis that is still running (or waiting to)."""

    task_ref: str


def analysis_key(task: dict) -> tuple[str, str, str] | None:
    """(kind, focus, owner) of an image analysis Task; None for anything else."""
    kind = next((str(c.get("code")) for c in task.get("code", {}).get("coding", [])), "")
    focus = str(task.get("focus", {}).get("reference", ""))
    owner = str(task.get("owner", {}).get("reference", ""))
    if kind not in MODEL_FOR_ANALYSIS or not focus or not owner:
        return None
    return kind, focus, owner


def order(task: dict) -> tuple[str, str]:
    """Which of two Tasks came first (authored time, then id)."""
    return str(task.get("authoredOn", "")), str(task.get("id", ""))


def _outputs(task: dict) -> list[tuple[str, str]]:
    found = [
        (str(o.get("type", {}).get("text", "")), str(o.get("valueReference", {}).get("reference")))
        for o in task.get("output", [])
        if o.get("valueReference", {}).get("reference")
    ]
    return sorted(found, key=lambda o: o[0] != "result")


def earlier(u: Unit, task: dict) -> Done | Pending | None:
    """The analysis ``task`` should take its result from, if another Task has done (or is doing)
    the same one: the earliest completed Task whose result still exists, else the earliest live
    Task authored before ``task`` whose queue job is still runnable."""
    key = analysis_key(task)
    if key is None:
        return None
    kind, focus, owner = key
    query = [("focus", focus), ("code", f"{HEARTH_AI}|{kind}"), ("owner", owner)]
    siblings = [
        s.content
        for s in u.read_many(u.match("Task", query))
        if s.content is not None
        and s.res_id != task.get("id")
        and any(i.get("system") == TASK_IDENTIFIER for i in s.content.get("identifier", []))
    ]
    for other in sorted(siblings, key=order):
        if other.get("status") != "completed":
            continue
        outputs = _outputs(other)
        if not outputs or outputs[0][0] != "result":
            continue
        res_type, _, res_id = outputs[0][1].partition("/")
        try:
            u.read(res_type, res_id)
        except (NotFound, Gone):
            continue
        return Done(other, outputs)
    for other in sorted(siblings, key=order):
        if other.get("status") not in LIVE_TASK or order(other) >= order(task):
            continue
        ref = f"Task/{other['id']}"
        if any(j.state in (queue.READY, queue.RUNNING) for j in queue.jobs_for_task(u, ref)):
            return Pending(ref)
    return None


def link_request(u: Unit, observation_ref: str, service_requests: list[str]) -> None:
    """Add ``service_requests`` to the Observation's ``basedOn`` (a new version, when any is
    new)."""
    res_type, _, res_id = observation_ref.partition("/")
    current = u.read(res_type, res_id).content or {}
    based_on = list(current.get("basedOn", []))
    known = {b.get("reference") for b in based_on}
    added = [{"reference": r} for r in service_requests if r not in known]
    if added:
        u.update(res_type, res_id, {**current, "basedOn": based_on + added})


def flags(u: Unit, kind: str, observation_ref: str) -> tuple[bool, bool]:
    """(high_risk, uncertain) of a stored classification Observation, as decided when it was
    written: uncertain when its value is Hearth's "uncertain" code, high risk when its screening
    interpretation is positive ("refer") or its value is a confident high-risk class of the
    model."""
    spec = MODEL_FOR_ANALYSIS[kind]
    res_type, _, res_id = observation_ref.partition("/")
    observation = u.read(res_type, res_id).content or {}
    codings = observation.get("valueCodeableConcept", {}).get("coding", [])
    uncertain = any(c.get("system") == HEARTH_AI and c.get("code") == UNCERTAIN for c in codings)
    labels = {
        c.get("code") for c in codings if str(c.get("system", "")).startswith(f"{HEARTH_LABEL}/")
    }
    screened = any(
        c.get("system") == INTERPRETATION and c.get("code") == "POS"
        for concept in observation.get("interpretation", [])
        for c in concept.get("coding", [])
    )
    return screened or (not uncertain and bool(labels & spec.high_risk)), uncertain
