"""Who acts: an ``Actor`` (role + FHIR reference) passed explicitly into every engine call.

The engine checks the role against each step's ``performerType``; it never reads identity from a
request. The HTTP edge builds the Actor in one place (``fhir_server/rest/workflow_http.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from resources.errors import Forbidden, Invalid

# The care roles of Hearth's workflows, as Task.performerType codes.
ROLE_SYSTEM = "http://hearth.local/fhir/CodeSystem/care-role"
ROLES = {
    "patient": "Patient",
    "cadre": "Community health worker",
    "doctor": "Doctor",
    "pharmacist": "Pharmacist",
    "admin": "Administrator",
    "ai": "AI analysis (inference worker)",
    "system": "Hearth itself (report delivery, scheduler)",
}
# Which resource type each role's reference must be.
_REFERENCE_TYPES = {
    "patient": ("Patient",),
    "cadre": ("Practitioner", "PractitionerRole"),
    "doctor": ("Practitioner", "PractitionerRole"),
    "pharmacist": ("Practitioner", "PractitionerRole"),
    "admin": ("Practitioner", "PractitionerRole"),
    "ai": ("Device",),
    "system": ("Device", "Organization"),
}


@dataclass(frozen=True)
class Actor:
    """The acting person (or device): ``role`` is a code of ROLE_SYSTEM, ``reference`` a FHIR
    relative reference such as ``Practitioner/123``."""

    role: str
    reference: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise Invalid(f"unknown role {self.role!r}; roles are {', '.join(sorted(ROLES))}")
        res_type, _, res_id = self.reference.partition("/")
        if not res_id or res_type not in _REFERENCE_TYPES[self.role]:
            raise Invalid(
                f"a {self.role} acts as {' or '.join(_REFERENCE_TYPES[self.role])}/[id], "
                f"not {self.reference!r}"
            )

    def require(self, roles: tuple[str, ...] | list[str], what: str) -> None:
        if self.role not in roles:
            raise Forbidden(f"{what} is for {' or '.join(roles)}, not {self.role}")


SYSTEM = Actor("system", "Device/hearth-workflow")


def role_concept(role: str) -> dict:
    return {"coding": [{"system": ROLE_SYSTEM, "code": role, "display": ROLES[role]}]}


def roles_of(task: dict) -> list[str]:
    """The role codes of a Task's performerType."""
    return [
        c["code"]
        for cc in task.get("performerType") or []
        for c in cc.get("coding") or []
        if c.get("system") == ROLE_SYSTEM and "code" in c
    ]
