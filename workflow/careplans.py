"""Treatment plans: the doctor's plan for a case as a FHIR R4 ``CarePlan`` (careplan.html) whose
activities are the resources that carry them out, made in one transaction:

- ``follow-up-photo`` — a ``Task`` for the patient (and the cadre) to send a new photo of the
  lesion, due in ``dueInDays`` (``restriction.period.start``); done when completed;
- ``referral`` — a ``ServiceRequest`` (e.g. an excision biopsy), to be done by ``dueInDays``;
- ``medication`` — a ``MedicationRequest`` with its dosage instruction (the pharmacist's and the
  reminders' input, as a prescription made at review);
- ``appointment`` — a ``booked`` ``Appointment`` (e.g. a follow-up visit in N weeks) in a free
  Slot of the chosen practitioner: the given ``slot``, or the practitioner's first free Slot from
  ``dueInDays`` on, booked as ``$book`` books (``appointments.book_in``: the Slot moves with
  If-Match, so two plans racing for one Slot never both get it — a named Slot answers 409, a
  Slot picked for the plan is picked again from what is still free); with ``propose`` it is a
  ``proposed`` Appointment on a Slot held ``busy-tentative``, which the patient accepts
  (``$accept``) or cancels.

Each activity is a ``CarePlan.activity.reference`` to its resource, so the plan's progress is the
resources' own status (a completed Task, a completed ServiceRequest, a MedicationRequest no longer
active), read by the patient's portal and the case view like any other record. The plan names the
case's order and the case Task in ``supportingInfo`` (R4 ``CarePlan.basedOn`` takes only
CarePlans), every activity resource is ``basedOn`` the case's order, and the case Task gains an
``output`` (``CarePlan``) naming the plan.

Progress (R4 careplan.html: an activity is a ``reference`` *or* a ``detail``, not both, so the
status of a referenced activity is its resource's): the Task completes, the Appointment is
booked, cancelled or fulfilled, the ServiceRequest completed — and ``on_write``, a repository
write hook, keeps the plan's own ``status`` current in the same transaction: ``completed`` once
every activity is finished (completed, fulfilled, cancelled, stopped, …), ``active`` again if one
is reopened. ``refer`` makes the case view's referral without a plan with the same
``referral`` builder, so there is one way of making a referral and one of booking.

Visibility: a plan and its activities are the doctor's own decisions, made after reading the
case, and carry no unverified AI result, so they carry no ``unverified-ai`` label: the patient
sees them (in their compartment: ``CarePlan.subject``, ``Task.for``, ``ServiceRequest.subject``,
``MedicationRequest.subject``, ``Appointment.actor``) as soon as the doctor made them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from resources.errors import Conflict, Gone, Invalid, NotFound, PreconditionFailed
from resources.storage.repository import Repository, Unit, WriteResult
from workflow import appointments, cases, medchecks
from workflow.actors import Actor
from workflow.tasks import add_io, now

ACTIVITY_SYSTEM = "http://hearth.local/fhir/CodeSystem/care-plan-activity"
KINDS = ("follow-up-photo", "referral", "medication", "appointment")
# Statuses that end an activity (Task, ServiceRequest, MedicationRequest, Appointment).
DONE = frozenset(
    {"completed", "fulfilled", "cancelled", "stopped", "revoked", "entered-in-error", "noshow",
     "failed", "rejected"}
)  # fmt: skip
ACTIVITY_TYPES = ("Task", "ServiceRequest", "MedicationRequest", "Appointment")
PICK_TRIES = 3
MAX_ACTIVITIES = 20
MAX_DAYS = 3660
PERFORMERS = ("Practitioner/", "PractitionerRole/", "Organization/")


@dataclass(frozen=True)
class Activity:
    kind: str
    description: str
    due_in_days: int | None = None
    medication: str | None = None
    dosage: str | None = None
    practitioner: str | None = None  # appointment: whose Slot; referral: the performer
    slot: str | None = None  # appointment: this Slot (else the first free from dueInDays)
    propose: bool = False  # appointment: proposed (Slot held) for the patient to accept
    medication_code: dict | None = None  # a Coding (RxNorm from the formulary picker)

    def check(self, n: int, where: str = "") -> None:
        where = where or f"activity {n + 1}"
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
        if self.kind == "appointment" and not (self.slot or self.practitioner):
            raise Invalid(f"{where}: an appointment needs a slot or a practitioner")
        if self.propose and self.kind != "appointment":
            raise Invalid(f"{where}: only an appointment is proposed")
        if self.slot and not self.slot.startswith("Slot/"):
            raise Invalid(f"{where}: slot must reference a Slot, not {self.slot!r}")
        if self.practitioner and not self.practitioner.startswith(PERFORMERS):
            raise Invalid(
                f"{where}: practitioner must reference a {' or '.join(p[:-1] for p in PERFORMERS)}"
            )
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


def referral(
    patient: str,
    order: str,
    actor: Actor,
    description: str,
    due_in_days: int | None = None,
    performer: str | None = None,
    reasons: list[str] | None = None,
) -> dict:
    """The ServiceRequest of a referral (a plan's activity or the case view's Refer): ``order``
    is the case's order it is ``basedOn``, ``performer`` whom it is to, ``reasons`` the findings
    it is made for (``reasonReference``), due within ``due_in_days``."""
    sr: dict = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "code": _concept("referral", description),
        "subject": {"reference": patient},
        "basedOn": [{"reference": order}],
        "requester": {"reference": actor.reference},
        "authoredOn": now(),
    }
    due = _due(due_in_days)
    if due:
        sr["occurrencePeriod"] = {"end": due}
    if performer:
        sr["performer"] = [{"reference": performer}]
    if reasons:
        sr["reasonReference"] = [{"reference": r} for r in reasons]
    return sr


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
        return referral(patient, order, actor, a.description, a.due_in_days, a.practitioner)
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
        case, patient, order = _case(u, case_id)
        refs = [_make(u, a, n, patient, order, actor) for n, a in enumerate(activities)]
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

    picks = any(a.kind == "appointment" and not a.slot for a in activities)
    tries = PICK_TRIES if picks else 1
    for attempt in range(tries):
        last = attempt + 1 >= tries
        try:
            return repo.run(fn)
        except PreconditionFailed as exc:
            # A Slot (or the case) changed under this unit: another plan or booking took it.
            # Nothing was written; a picked Slot is picked again from those still free.
            if last:
                raise Conflict(
                    "a Slot of the plan or the case changed at the same time; nothing was "
                    f"written ({exc})"
                ) from exc
        except Conflict:
            # A picked Slot taken between the search and its read: pick again.
            if last:
                raise
    raise AssertionError("unreachable")


def _case(u: Unit, case_id: str) -> tuple:
    """The case Task (a case, not a step), its patient and its order."""
    case = cases.read_task(u, case_id)
    if case.resource.get("partOf") or not case.resource.get("basedOn"):
        raise Invalid(f"Task/{case_id} is a step, not a case")
    return case, case.resource["for"]["reference"], case.resource["basedOn"][0]["reference"]


def _make(u: Unit, a: Activity, n: int, patient: str, order: str, actor: Actor) -> str:
    """Activity ``a``'s resource made in ``u``; its reference."""
    if a.kind != "appointment":
        return u.create(_resource(a, patient, order, actor)).stored.ref
    slot_id = (a.slot or "").removeprefix("Slot/")
    if not slot_id:
        not_before = _due(a.due_in_days or 0) or now()
        found = appointments.first_free_slot(u, a.practitioner or "", not_before)
        if found is None:
            raise Conflict(
                f"activity {n + 1}: {a.practitioner} has no free Slot from {not_before[:10]} on"
            )
        slot_id = found.res_id
    elif a.practitioner:
        slot = u.read("Slot", slot_id).resource
        schedule = u.read("Schedule", slot["schedule"]["reference"].removeprefix("Schedule/"))
        actors = {x.get("reference") for x in schedule.resource.get("actor") or []}
        if a.practitioner not in actors:
            raise Invalid(f"activity {n + 1}: {a.slot} is not a Slot of {a.practitioner}")
    return appointments.book_in(
        u, slot_id, patient, reason=a.description, based_on=order, proposed=a.propose
    ).ref


def refer(
    repo: Repository,
    actor: Actor,
    case_id: str,
    description: str,
    *,
    due_in_days: int | None = None,
    performer: str | None = None,
    reasons: list[str] | None = None,
) -> dict:
    """The case view's referral without a plan (a doctor's act): the ``referral`` ServiceRequest
    ``basedOn`` the case's order, for the given findings (default: the case's AI results and
    the findings its steps recorded), named by the case Task's ``referral`` output."""
    actor.require(("doctor",), "referring a patient")
    Activity("referral", description, due_in_days, practitioner=performer).check(0, "$refer")

    def fn(u: Unit) -> dict:
        case, patient, order = _case(u, case_id)
        given = reasons if reasons is not None else _findings(u, case.resource)
        for r in given:
            res_type, _, rid = r.partition("/")
            if res_type not in ("Observation", "Condition", "DiagnosticReport", "RiskAssessment"):
                raise Invalid(f"reason must reference a finding (Observation, …), not {r!r}")
            found = u.read(res_type, rid).resource
            subject = (found.get("subject") or {}).get("reference")
            if subject != patient:
                raise Invalid(f"{r} is not a finding of {patient}")
        if performer:
            u.read(*performer.split("/", 1))
        sr = referral(patient, order, actor, description, due_in_days, performer, given)
        made = u.create(sr).stored
        content = add_io(case.resource, "output", "referral", "valueReference", {"reference": made.ref})  # fmt: skip
        u.update("Task", case_id, {**content, "lastModified": now()}, if_match=str(case.version))
        return made.resource

    try:
        return repo.run(fn)
    except PreconditionFailed as exc:
        raise Conflict(f"the case changed at the same time; try again ({exc})") from exc


def _findings(u: Unit, case: dict) -> list[str]:
    """The case's findings: its AI results (``ai-result`` inputs) and the Observations its steps
    recorded as outputs."""
    refs = [
        i["valueReference"]["reference"]
        for i in case.get("input") or []
        if "valueReference" in i and _label(i) == "ai-result"
    ]
    steps = u.read_many(u.match("Task", [("part-of", f"Task/{case['id']}")]))
    for s in steps:
        for o in s.resource.get("output") or []:
            r = (o.get("valueReference") or {}).get("reference", "")
            if r.startswith("Observation/") and r not in refs:
                refs.append(r)
    return refs


def _label(io: dict) -> str:
    return next((c.get("code", "") for c in io.get("type", {}).get("coding") or []), "")


def on_write(u: Unit, result: WriteResult) -> None:
    """Write hook: a plan activity's resource changed status → the plans naming it are
    ``completed`` when all their activities are finished, ``active`` when one is reopened."""
    stored = result.stored
    content = stored.content
    if stored.res_type not in ACTIVITY_TYPES or content is None or not content.get("basedOn"):
        return
    if result.status not in ("created", "updated"):
        return
    ref = f"{stored.res_type}/{stored.res_id}"
    for plan in u.read_many(u.match("CarePlan", [("activity-reference", ref)])):
        if plan.resource.get("status") not in ("active", "completed"):
            continue
        statuses = []
        for a in plan.resource.get("activity") or []:
            r = (a.get("reference") or {}).get("reference", "")
            if r == ref:
                statuses.append(content.get("status"))
            elif "/" in r:
                try:
                    statuses.append(u.read(*r.split("/", 1)).resource.get("status"))
                except (NotFound, Gone):  # deleted, or not the writer's to read: keep it open
                    statuses.append(None)
        status = "completed" if statuses and all(s in DONE for s in statuses) else "active"
        if status != plan.resource["status"]:
            u.update("CarePlan", plan.res_id, {**plan.resource, "status": status})
