"""The workflow operations' HTTP edge: who is acting, and the operation parameters.

``actor_of(ctx, req)`` is the ONE place the acting person is taken from a request: the SMART
token's user (its role and ``fhirUser``). A trusted backend service — a client granted
``system/*.cruds``, with no user — may instead act on behalf of a named person with two headers,
``X-Hearth-Role`` (patient | cadre | doctor | pharmacist | admin | ai) and ``X-Hearth-Actor``
(``Practitioner/123``, ``Patient/7``, ``Device/…``), as an integration engine does; the headers
are ignored for every other token. The engine below only ever sees the ``Actor`` built here.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import Context, FhirRequest
from resources.errors import Forbidden, Invalid, MethodNotAllowed, Unauthorized
from workflow.actors import Actor

ROLE_HEADER = "x-hearth-role"
ACTOR_HEADER = "x-hearth-actor"


def actor_of(ctx: Context, req: FhirRequest) -> Actor:
    """The acting person of a workflow request (see the module doc); 401 when absent."""
    access = ctx.access
    if access is not None and access.username is not None:
        if not access.role or not access.fhir_user:
            raise Forbidden(f"user {access.username} has no role or fhirUser to act with")
        return Actor(access.role, access.fhir_user)
    if access is not None and not access.is_admin:
        raise Forbidden("workflow steps are taken by a signed-in user or a trusted backend")
    role, reference = req.headers.get(ROLE_HEADER), req.headers.get(ACTOR_HEADER)
    if not role or not reference:
        raise Unauthorized(
            "workflow operations need the acting person: X-Hearth-Role and X-Hearth-Actor "
            "(replaced by the SMART token when auth is enabled)"
        )
    if role == "system":
        raise Invalid("the system role is Hearth's own; a request cannot act as it")
    return Actor(role.strip(), reference.strip())


def require_post(req: FhirRequest, name: str) -> None:
    if req.method != "POST":
        raise MethodNotAllowed(f"${name} changes state: use POST")


class Params:
    """The ``Parameters`` body of an operation call (an empty body is no parameters)."""

    def __init__(self, body: Any) -> None:
        if body is None:
            self.parts: list[dict] = []
        elif isinstance(body, dict) and body.get("resourceType") == "Parameters":
            self.parts = [p for p in body.get("parameter") or [] if isinstance(p, dict)]
        else:
            raise Invalid("the operation takes a Parameters resource")

    def all(self, name: str) -> list[dict]:
        return [p for p in self.parts if p.get("name") == name]

    def _value(self, part: dict, key: str) -> Any:
        if key not in part:
            raise Invalid(f"parameter {part.get('name')!r} must be given as {key}")
        return part[key]

    def one(self, name: str, key: str, *, required: bool = False) -> Any:
        found = self.all(name)
        if len(found) > 1:
            raise Invalid(f"parameter {name!r} is given {len(found)} times")
        if not found:
            if required:
                raise Invalid(f"parameter {name!r} is required")
            return None
        return self._value(found[0], key)

    def reference(self, name: str, *, required: bool = False) -> str | None:
        value = self.one(name, "valueReference", required=required)
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
            raise Invalid(f"parameter {name!r} needs valueReference.reference")
        return value["reference"]

    def references(self, name: str) -> list[str]:
        out = []
        for part in self.all(name):
            value = self._value(part, "valueReference")
            if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
                raise Invalid(f"parameter {name!r} needs valueReference.reference")
            out.append(value["reference"])
        return out

    def boolean(self, name: str) -> bool:
        value = self.one(name, "valueBoolean")
        if value is not None and not isinstance(value, bool):
            raise Invalid(f"parameter {name!r} must be a boolean")
        return bool(value)

    def resources(self, name: str) -> list[dict]:
        out = []
        for part in self.all(name):
            res = part.get("resource")
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                raise Invalid(f"parameter {name!r} carries a resource")
            out.append(res)
        return out


def parameters(**values: Any) -> dict:
    """A Parameters resource of string values (None left out)."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": k.replace("_", "-"), "valueString": str(v)}
            for k, v in values.items()
            if v is not None
        ],
    }
