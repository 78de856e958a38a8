"""Cases: a parent Task per case and a child Task (``partOf``) per step, moved through their
states by ``start_case``, ``claim``, ``release``, ``complete`` and ``record_ai_result``.

Every call takes the acting ``Actor`` explicitly, checks its role against the step's
``performerType``, and writes everything it changes in one ``Repository.run`` unit with
``If-Match`` on the Task it moves: of two concurrent claims exactly one wins, the other gets 409.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from resources.errors import Conflict, Forbidden, Invalid, PreconditionFailed
from resources.search.visibility import (
    has_unverified_label,
    with_unverified_label,
    without_unverified_label,
)
from resources.storage.repository import Repository, Unit, new_id
from resources.storage.store import Stored
from workflow import appointments, medchecks
from workflow.actors import Actor, role_concept, roles_of
from workflow.definitions import CASE_SYSTEM, STEP_SYSTEM, CaseDefinition, Step, definition
from workflow.effects import CONDITIONS, EFFECTS, StepDone
from workflow.tasks import (
    add_io,
    business_status,
    check_transition,
    code_of,
    io_values,
    note,
    now,
    with_status,
)

CASE_IDENTIFIER = "http://hearth.local/fhir/workflow/case"
CASE_KEY = "http://hearth.local/fhir/workflow/case-key"
# Which element of an output resource names the patient.
_SUBJECT = {
    "Observation": "subject",
    "Condition": "subject",
    "MedicationRequest": "subject",
    "MedicationDispense": "subject",
    "ServiceRequest": "subject",
    "QuestionnaireResponse": "subject",
}
_BASED_ON = ("Observation", "MedicationRequest", "ServiceRequest", "QuestionnaireResponse")


@dataclass
class Outcome:
    """What an engine call changed: the Task it acted on, and the case afterwards."""

    task: dict
    case: dict
    deliver: bool = False  # a report is waiting for delivery
    created: list[str] = field(default_factory=list)


# -- reading ------------------------------------------------------------------------------------
def read_task(u: Unit, task_id: str) -> Stored:
    return u.read("Task", task_id)


def steps_of(u: Unit, case_id: str) -> list[Stored]:
    """The step Tasks of a case, in definition order (other Tasks ``partOf`` the case, such as
    the AI analysis that carries out its AI step, are not steps)."""
    found = u.read_many(u.match("Task", [("part-of", f"Task/{case_id}")]))
    case = u.read("Task", case_id).resource
    order = [s.id for s in _definition_of(case).steps]
    steps = [s for s in found if code_of(s.resource, STEP_SYSTEM) in order]
    return sorted(steps, key=lambda s: order.index(code_of(s.resource, STEP_SYSTEM) or ""))


def _definition_of(case: dict) -> CaseDefinition:
    case_code = code_of(case, CASE_SYSTEM)
    if case_code is None:
        raise Invalid(f"Task/{case.get('id')} is not a Hearth case")
    return definition(case_code)


def _case_and_step(u: Unit, task: dict) -> tuple[Stored, CaseDefinition, Step]:
    step_code = code_of(task, STEP_SYSTEM)
    parents = [p.get("reference", "") for p in task.get("partOf") or []]
    if step_code is None or not parents or not parents[0].startswith("Task/"):
        raise Invalid(f"Task/{task.get('id')} is not a step of a Hearth case")
    case = u.read("Task", parents[0].removeprefix("Task/"))
    case_def = _definition_of(case.resource)
    return case, case_def, case_def.step(step_code)


def _save(u: Unit, stored: Stored, content: dict) -> dict:
    return u.update("Task", stored.res_id, content, if_match=str(stored.version)).stored.resource


def _run(repo: Repository, fn):  # type: ignore[no-untyped-def]
    """One unit; a concurrent change to the same Task (If-Match lost) becomes 409."""
    try:
        return repo.run(fn)
    except PreconditionFailed as exc:
        raise Conflict(
            f"the Task was changed by someone else at the same time; read it again ({exc})"
        ) from exc


# -- starting a case ----------------------------------------------------------------------------
def start_case(
    repo: Repository,
    actor: Actor,
    case_type: str,
    patient: str,
    *,
    focus: str | None = None,
    referred_to: str | None = None,
    priority: str = "routine",
    note_text: str | None = None,
    key: str | None = None,
) -> Outcome:
    """Start a case of ``case_type`` for ``patient``: a ServiceRequest (the order the report
    answers), the case Task and one Task per step (the first ``requested``, the rest ``draft``).

    With ``key`` (e.g. ``imaging-review:ImagingStudy/1``) the start is idempotent: the order is
    a conditional create on that key, so a second start — also a concurrent one — returns the
    case already started for it."""
    case_def = definition(case_type)
    actor.require(case_def.started_by, f"starting a {case_type} case")
    if actor.role == "patient" and actor.reference != patient:
        raise Forbidden("a patient may start a case only for themself")
    if not patient.startswith("Patient/"):
        raise Invalid(f"patient must be a Patient reference, not {patient!r}")
    if priority not in ("routine", "urgent", "asap", "stat"):
        raise Invalid(f"priority {priority!r} is not a FHIR request priority")
    if case_def.focus == ("Patient",):
        focus = focus or patient
    if focus is None:
        raise Invalid(f"a {case_type} case needs a focus ({' or '.join(case_def.focus)})")
    if focus.split("/")[0] not in case_def.focus:
        raise Invalid(
            f"the focus of a {case_type} case is {' or '.join(case_def.focus)}, not {focus}"
        )
    if referred_to is not None and not referred_to.startswith(
        ("Practitioner/", "PractitionerRole/")
    ):
        raise Invalid("referredTo must be a Practitioner or PractitionerRole reference")

    def fn(u: Unit) -> Outcome:
        for ref in filter(None, (patient, focus, referred_to)):
            u.read(*ref.split("/", 1))
        case_id, stamp = new_id(), now()
        concept = {
            "coding": [{"system": CASE_SYSTEM, "code": case_def.id, "display": case_def.title}]
        }
        order: dict = {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "priority": priority,
            "code": concept,
            "subject": {"reference": patient},
            "authoredOn": stamp,
            "identifier": [{"system": CASE_IDENTIFIER, "value": case_id}],
        }
        if actor.role != "system":
            order["requester"] = {"reference": actor.reference}
        if referred_to:
            order["performer"] = [{"reference": referred_to}]
        if key is None:
            sr = u.create(order).stored
        else:
            order["identifier"].append({"system": CASE_KEY, "value": key})
            made = u.create(order, if_none_exist=[("identifier", f"{CASE_KEY}|{key}")])
            sr = made.stored
            if made.status == "exists":
                found = u.read_many(
                    u.match(
                        "Task", [("based-on", sr.ref), ("code", f"{CASE_SYSTEM}|{case_def.id}")]
                    )
                )
                parent = [t for t in found if not t.resource.get("partOf")]
                return Outcome(task=parent[0].resource, case=parent[0].resource)
        common = {
            "resourceType": "Task",
            "intent": "order",
            "priority": priority,
            "for": {"reference": patient},
            "focus": {"reference": focus},
            "basedOn": [{"reference": sr.ref}],
            "groupIdentifier": {"system": CASE_IDENTIFIER, "value": case_id},
            "authoredOn": stamp,
            "lastModified": stamp,
        }
        if actor.role != "system":
            common["requester"] = {"reference": actor.reference}
        case: dict = {
            **common,
            "identifier": [{"system": CASE_IDENTIFIER, "value": case_id}],
            "status": "in-progress",
            "businessStatus": business_status(case_def.start_status),
            "code": concept,
            "description": case_def.title,
        }
        if note_text:
            case = note(case, note_text, actor.reference)
        case = u.create(case, res_id=case_id).stored.resource
        for n, step in enumerate(case_def.steps):
            child: dict = {
                **common,
                "status": "requested" if n == 0 else "draft",
                "partOf": [{"reference": f"Task/{case_id}"}],
                "code": {
                    "coding": [{"system": STEP_SYSTEM, "code": step.id, "display": step.title}]
                },
                "description": step.title,
                "performerType": [role_concept(r) for r in step.performer],
            }
            if referred_to and "doctor" in step.performer:
                child["owner"] = {"reference": referred_to}
            u.create(child)
        return Outcome(task=case, case=case, created=[sr.ref])

    return _run(repo, fn)


# -- claim / release ----------------------------------------------------------------------------
def claim(repo: Repository, actor: Actor, task_id: str) -> Outcome:
    """Take a ``requested`` step: status ``in-progress``, ``owner`` = the actor."""

    def fn(u: Unit) -> Outcome:
        stored = read_task(u, task_id)
        task = stored.resource
        case, _, step = _case_and_step(u, task)
        _require_performer(actor, task, step)
        owner = (task.get("owner") or {}).get("reference")
        if task.get("status") == "requested" and owner and owner != actor.reference:
            raise Forbidden(f"Task/{task_id} is assigned to {owner}")
        check_transition(task, "in-progress", "claim")
        changed = with_status(
            task,
            "in-progress",
            owner={"reference": actor.reference},
            executionPeriod={"start": now()},
        )
        return Outcome(task=_save(u, stored, changed), case=case.resource)

    return _run(repo, fn)


def release(
    repo: Repository, actor: Actor, task_id: str, *, reassign_to: str | None = None
) -> Outcome:
    """Give a claimed step back to the worklist (``requested``, no owner), or — a doctor — hand
    it to another doctor (``reassign_to``: that Practitioner becomes the owner)."""

    def fn(u: Unit) -> Outcome:
        stored = read_task(u, task_id)
        task = stored.resource
        case, _, step = _case_and_step(u, task)
        _require_performer(actor, task, step)
        _require_owner(actor, task)
        check_transition(task, "requested", "release")
        new_owner = None
        if reassign_to is not None:
            actor.require(("doctor",), "reassigning a step")
            if not reassign_to.startswith(("Practitioner/", "PractitionerRole/")):
                raise Invalid("a step is reassigned to a Practitioner or PractitionerRole")
            u.read(*reassign_to.split("/", 1))
            new_owner = {"reference": reassign_to}
        changed = with_status(task, "requested", owner=new_owner, executionPeriod=None)
        return Outcome(task=_save(u, stored, changed), case=case.resource)

    return _run(repo, fn)


def _require_performer(actor: Actor, task: dict, step: Step) -> None:
    roles = roles_of(task) or list(step.performer)
    if actor.role not in roles:
        raise Forbidden(
            f"Task/{task.get('id')} ({step.title}) is performed by {' or '.join(roles)}, "
            f"not by a {actor.role}"
        )


def _require_owner(actor: Actor, task: dict) -> None:
    owner = (task.get("owner") or {}).get("reference")
    if task.get("status") == "in-progress" and owner != actor.reference:
        raise Forbidden(f"Task/{task.get('id')} is owned by {owner}, not {actor.reference}")


# -- completing a step --------------------------------------------------------------------------
def complete(
    repo: Repository,
    actor: Actor,
    task_id: str,
    *,
    outputs: Iterable[dict] = (),
    conclusion: str | None = None,
    conclusion_code: dict | None = None,
    note_text: str | None = None,
) -> Outcome:
    """Finish a claimed step: store the ``outputs`` it produced (resources of the types the step
    allows, linked to the patient and the case's order), mark it ``completed``, and advance the
    case (next step ``requested``, effects such as the final report)."""
    outputs = list(outputs)

    def fn(u: Unit) -> Outcome:
        stored = read_task(u, task_id)
        task = stored.resource
        case, case_def, step = _case_and_step(u, task)
        _require_performer(actor, task, step)
        if step.automatic:
            raise Forbidden(f"{step.title} is done by Hearth, not completed by hand")
        if task.get("status") != "in-progress":
            check_transition(task, "completed", "complete")  # raises for draft/completed/...
            raise Conflict(f"claim Task/{task_id} ($claim) before completing it")
        _require_owner(actor, task)
        patient = case.resource["for"]["reference"]
        order = case.resource["basedOn"][0]["reference"]
        changed = task
        created = []
        for body in outputs:
            res_type = body.get("resourceType") if isinstance(body, dict) else None
            if res_type not in step.outputs:
                raise Invalid(
                    f"{step.title} records {', '.join(step.outputs) or 'no resources'}, "
                    f"not {res_type}"
                )
            body = {k: v for k, v in body.items() if k != "id"}
            body[_SUBJECT[res_type]] = {"reference": patient}
            if res_type in _BASED_ON:
                body["basedOn"] = [*(body.get("basedOn") or []), {"reference": order}]
            if res_type == "Observation":
                body.setdefault("performer", [{"reference": actor.reference}])
            if res_type == "MedicationRequest":
                body.setdefault("requester", {"reference": actor.reference})
            if res_type == "QuestionnaireResponse" and actor.role != "patient":
                body.setdefault("author", {"reference": actor.reference})
            ref = u.create(body).stored.ref
            created.append(ref)
            changed = add_io(changed, "output", res_type, "valueReference", {"reference": ref})
        for ref in created:  # after all are made: two prescribed together are checked as a pair
            if ref.startswith("MedicationRequest/"):
                medchecks.check(u, ref, patient)
        if conclusion:
            changed = add_io(changed, "output", "conclusion", "valueString", conclusion)
        if conclusion_code:
            changed = add_io(
                changed, "output", "conclusion-code", "valueCodeableConcept", conclusion_code
            )
        if note_text:
            changed = note(changed, note_text, actor.reference)
        period = {**(task.get("executionPeriod") or {}), "end": now()}
        done = _save(u, stored, with_status(changed, "completed", executionPeriod=period))
        if "doctor" in roles_of(task):
            _verify_ai_results(u, case.res_id)
            case = u.read("Task", case.res_id)  # the verification may have changed both
            done = u.read("Task", task_id).resource
        new_case, deliver = _advance(u, case, case_def, step, actor)
        return Outcome(task=done, case=new_case, deliver=deliver, created=created)

    return _run(repo, fn)


UNVERIFIED = ("registered", "preliminary")


def _verify_ai_results(u: Unit, case_id: str) -> None:
    """A doctor's step is done: the case's AI results (the AI steps' ``ai-result`` outputs) have
    been verified, and those still ``registered`` / ``preliminary`` become ``final`` -- from
    then on the patient sees them (docs/security.md, "What a patient token sees")."""
    for s in steps_of(u, case_id):
        if "ai" not in roles_of(s.resource):
            continue
        for value in io_values(s.resource, "output", "ai-result"):
            res_type, _, res_id = str((value or {}).get("reference", "")).partition("/")
            if res_type not in ("Observation", "RiskAssessment") or not res_id:
                continue
            result = u.read(res_type, res_id)
            if result.resource.get("status") in UNVERIFIED:
                u.update(res_type, res_id, {**result.resource, "status": "final"})
    # What the workflow wrote about the result (resources.search.visibility.UNVERIFIED_AI): the case,
    # its steps and analysis Tasks, their heatmap Media and the proposed Appointment.
    case = u.read("Task", case_id)
    tasks = [case, *u.read_many(u.match("Task", [("part-of", f"Task/{case_id}")]))]
    refs = [
        str((o.get("valueReference") or {}).get("reference", ""))
        for t in tasks
        for o in t.resource.get("output") or []
    ]
    for ref in refs:
        res_type, _, res_id = ref.partition("/")
        if res_type in ("Media", "Appointment") and res_id:
            _unlabel(u, u.read(res_type, res_id))
    for t in tasks:
        _unlabel(u, u.read("Task", t.res_id))


def _unlabel(u: Unit, stored: Stored) -> None:
    if has_unverified_label(stored.resource):
        u.update(stored.res_type, stored.res_id, without_unverified_label(stored.resource))


def _advance(
    u: Unit, case: Stored, case_def: CaseDefinition, step: Step, actor: Actor
) -> tuple[dict, bool]:
    """After ``step`` completed: the case shows its status, runs its effects, and the next
    applicable step becomes ``requested`` (conditional ones that do not apply are cancelled).
    Effects and conditions are the registries of :mod:`workflow.effects`."""
    content = {
        **case.resource,
        "businessStatus": business_status(step.done_status),
        "lastModified": now(),
    }
    steps = {code_of(s.resource, STEP_SYSTEM): s for s in steps_of(u, case.res_id)}
    done = StepDone(u, content, case_def, [s.resource for s in steps.values()], actor)
    for name in step.effects:
        EFFECTS[name](done)
    content = done.case
    for nxt in case_def.after(step.id):
        stored = steps[nxt.id]
        if nxt.when is not None:
            condition = CONDITIONS[nxt.when]
            if not condition.test(s.resource for s in steps.values()):
                reason = {"text": f"not applicable: {condition.unmet}"}
                _save(u, stored, with_status(stored.resource, "cancelled", statusReason=reason))
                continue
        _save(u, stored, with_status(stored.resource, "requested"))
        break
    else:
        content = {**content, "status": "completed"}
    u.update("Task", case.res_id, content)
    return u.read("Task", case.res_id).resource, done.deliver


# -- the AI step --------------------------------------------------------------------------------
def record_ai_result(
    repo: Repository,
    case_task_id: str,
    result_refs: list[str],
    high_risk: bool,
    uncertain: bool,
    *,
    device: str | None = None,
) -> Outcome:
    """Called by the inference module once its Observation / RiskAssessment results are stored
    (each with ``basedOn`` → the AI step Task, the case Task or the case's ServiceRequest).

    Completes the case's open AI step with the results as outputs and advances the case. High
    risk: the case and its steps become ``urgent`` and a ``proposed`` Appointment takes the
    referred doctor's next free Slot. Uncertain: the doctor step is flagged as a mandatory
    review. Recording the same results again changes nothing."""
    if not result_refs:
        raise Invalid("record_ai_result needs at least one Observation or RiskAssessment")
    actor = Actor("ai", device or "Device/hearth-inference")

    def fn(u: Unit) -> Outcome:
        case = u.read("Task", case_task_id)
        case_def = _definition_of(case.resource)
        steps = steps_of(u, case_task_id)
        ai_steps = [s for s in steps if "ai" in roles_of(s.resource)]
        open_ = [s for s in ai_steps if s.resource["status"] in ("requested", "in-progress")]
        if not open_:
            recorded = {
                v.get("reference")
                for s in ai_steps
                for v in io_values(s.resource, "output", "ai-result")
            }
            if ai_steps and set(result_refs) <= recorded:
                return Outcome(task=ai_steps[0].resource, case=case.resource)
            raise Conflict(f"case Task/{case_task_id} has no AI step waiting for a result")
        stored = open_[0]
        allowed = {
            f"Task/{case_task_id}",
            stored.ref,
            *(b["reference"] for b in case.resource["basedOn"]),
        }
        for ref in result_refs:
            res_type, _, res_id = ref.partition("/")
            if res_type not in ("Observation", "RiskAssessment"):
                raise Invalid(f"an AI result is an Observation or RiskAssessment, not {ref}")
            result = u.read(res_type, res_id).resource
            based_on = result.get("basedOn") or []  # RiskAssessment.basedOn is 0..1
            based_on = [based_on] if isinstance(based_on, dict) else based_on
            based = {b.get("reference") for b in based_on if isinstance(b, dict)}
            if not based & allowed:
                raise Invalid(f"{ref}.basedOn must reference the case, its AI step or its order")
        step = case_def.step(code_of(stored.resource, STEP_SYSTEM) or "")
        task = stored.resource
        for ref in result_refs:
            task = add_io(task, "output", "ai-result", "valueReference", {"reference": ref})
        period = {**(task.get("executionPeriod") or {}), "end": now()}
        task = with_status(
            task, "completed", owner={"reference": actor.reference}, executionPeriod=period
        )
        if high_risk:
            task["priority"] = "urgent"
        done = _save(u, stored, task)
        content = case.resource
        for ref in result_refs:
            content = add_io(content, "input", "ai-result", "valueReference", {"reference": ref})
        content = add_io(content, "input", "high-risk", "valueBoolean", high_risk)
        content = add_io(content, "input", "uncertain", "valueBoolean", uncertain)
        if high_risk:
            content["priority"] = "urgent"
            for s in steps:
                if s.ref != stored.ref and s.resource["status"] in ("draft", "requested"):
                    _save(u, s, {**s.resource, "priority": "urgent"})
            appt = appointments.propose_for_case(u, content)
            text = (
                f"high-risk AI result: proposed {appt}"
                if appt
                else ("high-risk AI result: no free Slot of the referred doctor to propose")
            )
            content = note(content, text)
            if appt:
                content = add_io(
                    content, "output", "appointment", "valueReference", {"reference": appt}
                )
        if uncertain:
            content = note(content, "AI result uncertain: doctor review is mandatory")
            for s in steps_of(u, case_task_id):
                if "doctor" in roles_of(s.resource) and s.resource["status"] in (
                    "draft",
                    "requested",
                ):
                    flagged = add_io(s.resource, "input", "mandatory-review", "valueBoolean", True)
                    _save(u, s, note(flagged, "AI result uncertain: mandatory doctor review"))
        # Until a doctor's step verifies the result, the patient sees none of this case's Tasks
        # (whatever the result said: resources.search.visibility.UNVERIFIED_AI).
        u.update("Task", case_task_id, with_unverified_label(content))
        for s in steps_of(u, case_task_id):
            if not has_unverified_label(s.resource):
                _save(u, s, with_unverified_label(s.resource))
        done = u.read("Task", stored.res_id).resource
        new_case, deliver = _advance(u, u.read("Task", case_task_id), case_def, step, actor)
        return Outcome(task=done, case=new_case, deliver=deliver)

    return _run(repo, fn)
