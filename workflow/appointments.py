"""Appointments on Schedule / Slot (R4 appointment.html, slot.html): booking, cancelling,
rescheduling and proposing, each in one unit that moves the Slot with ``If-Match`` so a Slot is
never booked twice, however many people try at once."""

from __future__ import annotations

from collections.abc import Callable

from resources.errors import Conflict, Forbidden, Invalid, PreconditionFailed
from resources.search.visibility import with_unverified_label
from resources.storage.repository import Repository, Unit
from resources.storage.store import Stored
from workflow.actors import Actor
from workflow.tasks import now


def _slot_busy(u: Unit, slot: Stored, status: str) -> None:
    if slot.resource.get("status") != "free":
        raise Conflict(f"{slot.ref} is {slot.resource.get('status')}, not free")
    u.update("Slot", slot.res_id, {**slot.resource, "status": status}, if_match=str(slot.version))


def _practitioners(u: Unit, slot: dict) -> list[dict]:
    schedule = u.read("Schedule", slot["schedule"]["reference"].removeprefix("Schedule/")).resource
    return [
        {"actor": a, "status": "accepted", "required": "required"}
        for a in schedule.get("actor") or []
    ]


def _appointment(u: Unit, slot: Stored, patient: str, status: str, **extra: object) -> dict:
    body = {
        "resourceType": "Appointment",
        "status": status,
        "slot": [{"reference": slot.ref}],
        "start": slot.resource["start"],
        "end": slot.resource["end"],
        "created": now()[:10],
        "participant": [
            {
                "actor": {"reference": patient},
                "status": "accepted" if status == "booked" else "needs-action",
            },
            *_practitioners(u, slot.resource),
        ],
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _check_patient(actor: Actor, patient: str) -> None:
    actor.require(("patient", "cadre", "doctor", "admin"), "booking an appointment")
    if actor.role == "patient" and actor.reference != patient:
        raise Forbidden("a patient books appointments only for themself")
    if not patient.startswith("Patient/"):
        raise Invalid(f"patient must be a Patient reference, not {patient!r}")


def _run(repo: Repository, fn: Callable[[Unit], dict]) -> dict:
    try:
        return repo.run(fn)
    except PreconditionFailed as exc:
        raise Conflict(f"the Slot was booked by someone else at the same time ({exc})") from exc


def _check_order(u: Unit, based_on: str, patient: str) -> None:
    """``based_on`` is a ServiceRequest of ``patient`` (the case's order an appointment is for)."""
    if not based_on.startswith("ServiceRequest/"):
        raise Invalid(f"basedOn must reference a ServiceRequest, not {based_on!r}")
    order = u.read("ServiceRequest", based_on.removeprefix("ServiceRequest/")).resource
    if (order.get("subject") or {}).get("reference") != patient:
        raise Invalid(f"{based_on} is not an order of {patient}")


def book_in(
    u: Unit,
    slot_id: str,
    patient: str,
    *,
    reason: str | None = None,
    based_on: str | None = None,
    proposed: bool = False,
) -> Stored:
    """In unit ``u``: the Slot becomes ``busy`` (If-Match on its version) and a ``booked``
    Appointment of ``patient`` is made on it, ``basedOn`` the order ``based_on`` when given (the
    one way Hearth books: ``$book``, a treatment plan's appointment, the case view); with
    ``proposed`` the Slot is held ``busy-tentative`` and the Appointment ``proposed``, for the
    patient to accept (``accept``) or cancel. Conflict when the Slot is not free;
    PreconditionFailed when another unit took it meanwhile."""
    u.read("Patient", patient.removeprefix("Patient/"))
    if based_on:
        _check_order(u, based_on, patient)
    slot = u.read("Slot", slot_id)
    _slot_busy(u, slot, "busy-tentative" if proposed else "busy")
    extra: dict = {"description": reason} if reason else {}
    if based_on:
        extra["basedOn"] = [{"reference": based_on}]
    status = "proposed" if proposed else "booked"
    return u.create(_appointment(u, slot, patient, status, **extra)).stored


def first_free_slot(u: Unit, practitioner: str, not_before: str) -> Stored | None:
    """The earliest free Slot starting at or after ``not_before`` on an active Schedule of
    ``practitioner``; None when there is none."""
    schedules = u.match("Schedule", [("actor", practitioner), ("active", "true")])
    if not schedules:
        return None
    refs = ",".join(s.ref for s in u.read_many(schedules))
    pks = u.match("Slot", [("schedule", refs), ("status", "free"), ("start", f"ge{not_before}")])
    slots = sorted(u.read_many(pks), key=lambda s: s.resource["start"])
    return slots[0] if slots else None


def book(
    repo: Repository,
    actor: Actor,
    slot_id: str,
    patient: str,
    *,
    reason: str | None = None,
    based_on: str | None = None,
) -> dict:
    """Book a free Slot: the Slot becomes ``busy`` and an Appointment ``booked``; 409 if taken."""
    _check_patient(actor, patient)

    def fn(u: Unit) -> dict:
        return book_in(u, slot_id, patient, reason=reason, based_on=based_on).resource

    return _run(repo, fn)


def _free_slots(u: Unit, appointment: dict) -> None:
    for ref in appointment.get("slot") or []:
        slot = u.read("Slot", ref["reference"].removeprefix("Slot/"))
        if slot.resource.get("status") in ("busy", "busy-tentative"):
            u.update("Slot", slot.res_id, {**slot.resource, "status": "free"})


def _own(actor: Actor, appointment: dict) -> None:
    actor.require(("patient", "cadre", "doctor", "admin"), "changing an appointment")
    if actor.role == "patient":
        refs = {p.get("actor", {}).get("reference") for p in appointment.get("participant") or []}
        if actor.reference not in refs:
            raise Forbidden("a patient changes only their own appointments")


def cancel(
    repo: Repository, actor: Actor, appointment_id: str, *, reason: str | None = None
) -> dict:
    """Cancel an appointment and free its Slot."""

    def fn(u: Unit) -> dict:
        appt = u.read("Appointment", appointment_id)
        _own(actor, appt.resource)
        if appt.resource["status"] in ("cancelled", "fulfilled", "noshow", "entered-in-error"):
            raise Conflict(f"{appt.ref} is {appt.resource['status']}: it cannot be cancelled")
        _free_slots(u, appt.resource)
        body = {**appt.resource, "status": "cancelled"}
        if reason:
            body["cancelationReason"] = {"text": reason}
        return u.update(
            "Appointment", appointment_id, body, if_match=str(appt.version)
        ).stored.resource

    return _run(repo, fn)


def reschedule(repo: Repository, actor: Actor, appointment_id: str, slot_id: str) -> dict:
    """Move an appointment to another free Slot in one unit: the new Slot is taken (409 if it is
    not free) and the old one freed; the Appointment keeps its id."""

    def fn(u: Unit) -> dict:
        appt = u.read("Appointment", appointment_id)
        _own(actor, appt.resource)
        if appt.resource["status"] not in ("proposed", "pending", "booked"):
            raise Conflict(f"{appt.ref} is {appt.resource['status']}: it cannot be rescheduled")
        new_slot = u.read("Slot", slot_id)
        _slot_busy(u, new_slot, "busy")
        _free_slots(u, appt.resource)
        body = {
            **appt.resource,
            "status": "booked",
            "slot": [{"reference": new_slot.ref}],
            "start": new_slot.resource["start"],
            "end": new_slot.resource["end"],
        }
        return u.update(
            "Appointment", appointment_id, body, if_match=str(appt.version)
        ).stored.resource

    return _run(repo, fn)


def accept(repo: Repository, actor: Actor, appointment_id: str) -> dict:
    """The patient (or a cadre, doctor, admin for them) accepts a ``proposed`` appointment: it
    becomes ``booked`` and its tentative Slot ``busy``."""

    def fn(u: Unit) -> dict:
        appt = u.read("Appointment", appointment_id)
        _own(actor, appt.resource)
        if appt.resource["status"] != "proposed":
            raise Conflict(f"{appt.ref} is {appt.resource['status']}, not proposed")
        for ref in appt.resource.get("slot") or []:
            slot = u.read("Slot", ref["reference"].removeprefix("Slot/"))
            if slot.resource.get("status") != "busy-tentative":
                raise Conflict(f"{slot.ref} is {slot.resource.get('status')}, not held for it")
            u.update(
                "Slot", slot.res_id, {**slot.resource, "status": "busy"}, if_match=str(slot.version)
            )
        participants = [
            {**p, "status": "accepted"}
            if p.get("actor", {}).get("reference", "").startswith("Patient/")
            else p
            for p in appt.resource.get("participant") or []
        ]
        body = {**appt.resource, "status": "booked", "participant": participants}
        return u.update(
            "Appointment", appointment_id, body, if_match=str(appt.version)
        ).stored.resource

    return _run(repo, fn)


def propose_for_case(u: Unit, case: dict) -> str | None:
    """A ``proposed`` Appointment in the referred doctor's next free Slot (the Slot becomes
    ``busy-tentative``); None when the case names no doctor or the doctor has no free Slot."""
    order = u.read(
        "ServiceRequest", case["basedOn"][0]["reference"].removeprefix("ServiceRequest/")
    )
    doctors = [p["reference"] for p in order.resource.get("performer") or [] if "reference" in p]
    if not doctors:
        return None
    slot = first_free_slot(u, doctors[0], now())
    if slot is None:
        return None
    _slot_busy(u, slot, "busy-tentative")
    body = _appointment(
        u,
        slot,
        case["for"]["reference"],
        "proposed",
        priority=1,
        description="Proposed after a high-risk AI result",
        basedOn=case["basedOn"],
    )
    # Seen by the patient once a doctor's step verified the result (workflow.cases).
    return u.create(with_unverified_label(body)).stored.ref
