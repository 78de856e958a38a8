"""Treatment plans: the doctor's plan for a case as a FHIR R4 ``CarePlan`` (careplan.html) whose
activities are the resources that carry them out, made in one transaction:

- ``follow-up-photo`` — a ``Task`` for the patient (and the cadre) to send a new photo of the
  lesion, due in ``dueInDays`` (``restriction.period.start``); done when completed;
- ``referral`` — a ``ServiceRequest`` (e.g. an excision biopsy), to be done by ``dueInDays``;
- ``medication`` — a ``MedicationRequest`` with its dosage instruction (the pharmacist's and the
  reminders' input, as a prescription made at review).

Each activity is a ``CarePlan.activity.reference`` to its resource, so the plan's progress is the
resources' own status (a completed Task, a completed ServiceRequest, a MedicationRequest no longer
active), read by the patient's portal and the case view like any other record. The plan names the
case's order and the case Task in ``supportingInfo`` (R4 ``CarePlan.basedOn`` takes only
CarePlans), every activity resource is ``basedOn`` the case's order, and the case Task gains an
``output`` (``CarePlan``) naming the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from resources.errors import Invalid
from resources.storage.repository import Repository, Unit
from workflow import cases, medchecks
from workflow.actors import Actor
from workflow.tasks import add_io, now

ACTIVITY_SYSTEM = "http://hearth.local/fhir/CodeSystem/care-plan-activity"
KINDS = ("follow-up-photo", "referral", "medication")
MAX_ACTIVITIES = 20
MAX_DAYS = 3660


@dataclass(frozen=True)
class Activity:
    kind: str
    description: str
    due_in_days: int | None = None
    medication: str | None = None
    dosage: str | None = None
    medication_code: dict | None = None  # a Coding (RxNorm from the formulary picker)

    def check(self, n: int) -> None:
        where = f"activity {n + 1}"
        if self.kind not in KINDS:
            raise Invalid(f"{where}: kind is one of {', '.join(KINDS)}, not {self.kind!r}")
        if not self.description.strip():
            raise Invalid(f"{where}: a description is required")
        if self.due_in_days is not None and not 0 <= self.due_in_days <= MAX_DAYS:
            raise Invalid(f"{where}: dueInDays is 0 to {MAX_DAYS}")
        if self.kind == "follow-up-photo" and self.due_in_days is None:
            raise Invalid(f"{where}: a follow-up photo needs dueInDays")
        if self.kind == "medication" and not (self.medication and self.dosage):
            raise Invalid(f"{where}: a medication needs medication and dosage")
        code = self.medication_code
        if code is not None and not (
            isinstance(code.get("system"), str) and isinstance(code.get("code"), str)
        ):
            raise Invalid(f"{where}: medicationCode is a Coding with a system and a code")


def _due(days: int | None) -> str | None:
    if days is None:
        return None
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    return at.isoformat().replace("+00:00", "Z")


def _concept(kind: str, text: str) -> dict:
    return {"coding": [{"system": ACTIVITY_SYSTEM, "code": kind}], "text": text}


def _resource(a: Activity, patient: str, order: str, actor: Actor) -> dict:
    due = _due(a.due_in_days)
    if a.kind == "follow-up-photo":
        task: dict = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "plan",
            "priority": "routine",
            "code": _concept(a.kind, "Follow-up photo"),
            "description": a.description,
            "for": {"reference": patient},
            "basedOn": [{"reference": order}],
            "requester": {"reference": actor.reference},
            "authoredOn": now(),
            "performerType": [
                {"coding": [{"system": "http://hearth.local/fhir/CodeSystem/care-role", "code": r}]}
                for r in ("patient", "cadre")
            ],
        }
        if due:
            task["restriction"] = {"period": {"start": due}}
        return task
    if a.kind == "referral":
        sr: dict = {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "code": _concept(a.kind, a.description),
            "subject": {"reference": patient},
            "basedOn": [{"reference": order}],
            "requester": {"reference": actor.reference},
            "authoredOn": now(),
        }
        if due:
            sr["occurrencePeriod"] = {"end": due}
        return sr
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "text": a.medication,
            **({"coding": [a.medication_code]} if a.medication_code else {}),
        },
        "subject": {"reference": patient},
        "basedOn": [{"reference": order}],
        "requester": {"reference": actor.reference},
        "authoredOn": now(),
        "note": [{"text": a.description}],
        "dosageInstruction": [{"text": a.dosage}],
    }


def plan(
    repo: Repository, actor: Actor, case_id: str, title: str, activities: list[Activity]
) -> dict:
    """Make the CarePlan of case ``case_id`` and its activities' resources (a doctor's act)."""
    actor.require(("doctor",), "making a treatment plan")
    if not title.strip():
        raise Invalid("a treatment plan needs a title")
    if not 1 <= len(activities) <= MAX_ACTIVITIES:
        raise Invalid(f"a treatment plan has 1 to {MAX_ACTIVITIES} activities")
    for n, a in enumerate(activities):
        a.check(n)

    def fn(u: Unit) -> dict:
        case = cases.read_task(u, case_id)
        if case.resource.get("partOf") or not case.resource.get("basedOn"):
            raise Invalid(f"Task/{case_id} is a step, not a case")
        patient = case.resource["for"]["reference"]
        order = case.resource["basedOn"][0]["reference"]
        refs = [u.create(_resource(a, patient, order, actor)).stored.ref for a in activities]
        for ref in refs:  # allergy and interaction checks (workflow/medchecks.py)
            if ref.startswith("MedicationRequest/"):
                medchecks.check(u, ref, patient)
        careplan = {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "title": title,
            "subject": {"reference": patient},
            "period": {"start": now()},
            "created": now(),
            "author": {"reference": actor.reference},
            "supportingInfo": [{"reference": order}, {"reference": f"Task/{case_id}"}],
            "activity": [{"reference": {"reference": r}} for r in refs],
        }
        made = u.create(careplan).stored
        content = add_io(case.resource, "output", "CarePlan", "valueReference", {"reference": made.ref})  # fmt: skip
        u.update("Task", case_id, {**content, "lastModified": now()}, if_match=str(case.version))
        return made.resource

    return repo.run(fn)
