"""A user's effective role, decided at each token issue (login, patient pick, refresh) from FHIR
data: patients by their fhirUser type, practitioners by the care-role codes of their active
PractitionerRoles, administrators by the account's admin flag.

PractitionerRole.code codings in Hearth's care-role CodeSystem (``workflow.actors.ROLE_SYSTEM``,
the one Task.performerType uses) name the role: ``cadre``, ``doctor``, ``pharmacist``. A role is
active unless ``active`` is false or ``period`` excludes today. Several roles: the widest
(doctor, then pharmacist, then cadre) decides the scope ceiling and the workflow role. A changed
PractitionerRole takes effect at the user's next token; tokens already issued keep theirs.
"""

from __future__ import annotations

from datetime import date

from resources.storage.repository import Repository, Unit
from resources.storage.store import Stored
from workflow.actors import ROLE_SYSTEM, role_concept

PRACTITIONER_ROLES = ("doctor", "pharmacist", "cadre")  # widest first
ADMIN = "admin"  # an account flag (``auth_user.role``), not a PractitionerRole
PATIENT_TYPES = ("Patient", "RelatedPerson")


def effective_role(repo: Repository, user: dict) -> str | None:
    """The role a token for ``user`` (an ``auth_user`` row) carries; None: no role (no token)."""
    if user["role"] == ADMIN:
        return ADMIN
    kind, _, rid = (user.get("fhir_user") or "").partition("/")
    if kind in PATIENT_TYPES and rid:
        return "patient"
    if kind == "Practitioner" and rid:
        return repo.read(lambda u: practitioner_role(u, rid))
    # an account not linked to any record yet: a patient still registering, or nobody
    return "patient" if user["role"] == "patient" else None


def practitioner_role(unit: Unit, practitioner_id: str, today: date | None = None) -> str | None:
    found = care_roles(unit, practitioner_id, today)
    return next((r for r in PRACTITIONER_ROLES if r in found), None)


def care_roles(unit: Unit, practitioner_id: str, today: date | None = None) -> list[str]:
    """The care roles of ``Practitioner/<practitioner_id>``'s active PractitionerRoles, widest
    first."""
    found = {
        code
        for stored, code in role_records(unit, practitioner_id)
        if is_active(stored.resource, today)
    }
    return [r for r in PRACTITIONER_ROLES if r in found]


def role_records(unit: Unit, practitioner_id: str) -> list[tuple[Stored, str]]:
    """(stored PractitionerRole, care-role code) for each care-role coding of the
    practitioner's PractitionerRoles, active or not."""
    out = []
    pks = unit.match("PractitionerRole", [("practitioner", f"Practitioner/{practitioner_id}")])
    for stored in unit.read_many(pks):
        if stored.content is None:
            continue
        for concept in stored.content.get("code") or []:
            for coding in concept.get("coding") or []:
                if coding.get("system") == ROLE_SYSTEM and coding.get("code") in PRACTITIONER_ROLES:
                    out.append((stored, coding["code"]))
    return out


def is_active(role: dict, today: date | None = None) -> bool:
    """A PractitionerRole in force: ``active`` not false and ``period`` covering today."""
    today = today or date.today()
    return role.get("active") is not False and _current(role.get("period") or {}, today)


def _current(period: dict, today: date) -> bool:
    start, end = period.get("start"), period.get("end")
    day = today.isoformat()
    return (not start or start[:10] <= day) and (not end or end[:10] >= day)


def assign(unit: Unit, practitioner: str, role: str) -> str:
    """Give ``practitioner`` (``Practitioner/<id>``) an active PractitionerRole with care-role
    ``role`` (once: an existing one with that code is kept); returns its id."""
    if role not in PRACTITIONER_ROLES:
        raise ValueError(f"a PractitionerRole role is one of {', '.join(PRACTITIONER_ROLES)}")
    body = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": practitioner},
        "code": [role_concept(role)],
    }
    criteria = [("practitioner", practitioner), ("role", f"{ROLE_SYSTEM}|{role}")]
    return unit.create(body, if_none_exist=criteria).stored.res_id
