"""The per-request context and the parsed request every interaction receives.

Built once per request by the router; interactions never touch Starlette objects, so the same
code serves HTTP calls and is easy to test. ``Access`` (who, which scopes, which patient
compartment) is built once from the bearer token and travels in the per-request ``Context``; it
drives the security filter and the AuditEvent of the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.auth.scopes import Scopes
from fhir_server.rest.operations.parameters import Parameters
from fhir_server.runtime.settings import Settings
from resources.storage.repository import Repository
from resources.storage.transaction import ParsedBundle


@dataclass(frozen=True)
class Access:
    """Who is calling: the client, the user (if any), the granted scopes and launch context."""

    client_id: str
    scopes: Scopes
    username: str | None = None
    role: str | None = None
    fhir_user: str | None = None  # "Practitioner/7"
    patient: str | None = None  # the patient in context (launch/patient or a patient user)
    encounter: str | None = None

    def mode(self, res_type: str, perm: str) -> str | None:
        """How ``perm`` on ``res_type`` is allowed: "all", "patient" (only the compartment of
        ``patient``) or None (not at all). A patient user's user-level access is their own
        compartment."""
        contexts = self.scopes.contexts_for(res_type, perm)
        if "system" in contexts or ("user" in contexts and self.role != "patient"):
            return "all"
        if contexts and self.patient is not None:
            return "patient"
        return None

    @property
    def is_admin(self) -> bool:
        """An admin user, or a backend client granted everything at system level."""
        if self.role == "admin":
            return True
        return any(
            g.context == "system" and g.res_type == "*" and g.perms == frozenset("cruds")
            for g in self.scopes.grants
        )


@dataclass
class Context:
    repo: Repository
    settings: Settings
    access: Access | None = None
    # Per-process services built on first use (e.g. "ai.analyzer": the loaded models).
    services: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.settings.fhir_base


@dataclass
class FhirRequest:
    method: str
    path: str  # path below the FHIR base, e.g. "Patient/1/_history"
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    prefer: dict[str, str] = field(default_factory=dict)
    body: Any = None
    res_type: str | None = None
    res_id: str | None = None
    vid: str | None = None
    # An operation's inputs, read once by the router (fhir_server/rest/operations/parameters.py)
    params: Parameters = field(default_factory=lambda: Parameters(""))
    # A batch/transaction Bundle's entries, parsed once (``gate.run``) for the authorization
    # and the execution alike (resources/storage/transaction.py ``parse_bundle``); None otherwise.
    bundle: ParsedBundle | None = None

    def resource_type(self) -> str:
        """``res_type`` of a type- or instance-level interaction (the router sets it for those)."""
        if self.res_type is None:
            raise ValueError(f"{self.method} {self.path} names no resource type")
        return self.res_type

    def instance(self) -> tuple[str, str]:
        """(``res_type``, ``res_id``) of an instance-level interaction (the router sets both for
        those)."""
        if self.res_type is None or self.res_id is None:
            raise ValueError(f"{self.method} {self.path} names no resource instance")
        return self.res_type, self.res_id

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None

    def criteria(self) -> list[tuple[str, str]]:
        """Query parameters that are search criteria (not _format/_pretty)."""
        return [(k, v) for k, v in self.query if k not in ("_format", "_pretty")]


@dataclass(frozen=True)
class JsonText:
    """A response body that is JSON text already (a resource as the database holds it): written
    as it is, parsed only to indent it for ``_pretty=true``."""

    text: str


@dataclass
class Reply:
    status: int
    body: dict | JsonText | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # What the request's audit event names besides its target (the resources an answer was built
    # from), and its outcome description (fhir_server/auth/gate.py)
    audit_what: tuple[str, ...] = ()
    audit_detail: str | None = None
