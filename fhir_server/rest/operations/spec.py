"""What an operation module declares: ``OPERATION = Operation(...)`` — its name, levels, types,
methods, the permission a caller needs, and its handler (docs/extending.md).

The router (``fhir_server/rest/routes.py``) dispatches from these declarations and enforces their
methods (405 with ``Allow`` otherwise), ``fhir_server/auth/enforce.py`` enforces their
permission, and the CapabilityStatement is generated from them. A declaration that breaks a rule
(no permission, GET on an operation that changes state, a type permission at system level) fails
when its module is imported, so the server does not start with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.rest.context import Context, FhirRequest, Reply

Handler = Callable[[Context, FhirRequest], Reply]
LEVELS = frozenset({"system", "type", "instance"})
METHODS = frozenset({"GET", "POST"})
SMART_PERMS = frozenset("cruds")


@dataclass(frozen=True)
class Permission:
    """What a caller needs to invoke an operation. Exactly one of:

    - ``type_perm``: this SMART permission (``c``, ``r``, ``u``, ``d``, ``s``) on the resource
      type the operation is invoked on (``Permission.on_type("r")``);
    - ``admin``: an administrator (an ``admin`` user or a ``system/*.cruds`` client);
    - ``self_checked``: any valid token; the operation checks the scopes itself, type by type
      (``$export``: docs/bulk-export.md) — say where in ``reason``.
    """

    type_perm: str | None = None
    admin: bool = False
    self_checked: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        chosen = (self.type_perm is not None) + self.admin + self.self_checked
        if chosen != 1:
            raise ValueError("a Permission is exactly one of type_perm, admin, self_checked")
        if self.type_perm is not None and self.type_perm not in SMART_PERMS:
            raise ValueError(f"type_perm must be one of c r u d s, not {self.type_perm!r}")
        if self.self_checked and not self.reason:
            raise ValueError("a self_checked Permission says where the operation checks scopes")

    @classmethod
    def on_type(cls, perm: str) -> Permission:
        return cls(type_perm=perm)


ADMIN = Permission(admin=True)


@dataclass(frozen=True, kw_only=True)
class Operation:
    name: str  # without the "$"
    definition: str  # canonical OperationDefinition URL
    levels: frozenset[str]  # "system", "type", "instance"
    handler: Handler
    permission: Permission  # no default: an operation must say who may call it
    types: frozenset[str] | None = None  # None: every resource type
    methods: frozenset[str] = METHODS
    affects_state: bool = False
    # A GET on a state-changing operation that only reports on what its POST started (the
    # job status of ``$reindex``): side-effect free, so FHIR's GET rule still holds.
    poll: Handler | None = None
    # The one resource input a bare (non-Parameters) resource body stands for ($validate's
    # ``resource``, operations.html#request); None: the body must be a Parameters resource.
    bare_resource: str | None = None
    # (type, definition URL) where a type's OperationDefinition differs from ``definition``
    definitions: tuple[tuple[str, str], ...] = ()
    instantiates: str | None = None  # a CapabilityStatement the operation makes us conform to

    def __post_init__(self) -> None:
        where = f"operation ${self.name}"
        if not isinstance(self.permission, Permission):
            raise TypeError(f"{where} must declare a Permission, not {self.permission!r}")
        if not self.levels or not self.levels <= LEVELS:
            raise ValueError(f"{where}: levels must be some of {sorted(LEVELS)}")
        if not self.methods or not self.methods <= METHODS:
            raise ValueError(f"{where}: methods must be some of {sorted(METHODS)}")
        if self.affects_state and "GET" in self.methods:
            # FHIR R4 operations.html#request: GET only for operations without side effects
            raise ValueError(f"{where} affects state, so it cannot be invoked with GET")
        if self.poll is not None and (not self.affects_state or "GET" in self.methods):
            raise ValueError(f"{where}: poll is the GET of a POST-only, state-changing operation")
        if self.permission.type_perm is not None and "system" in self.levels:
            raise ValueError(f"{where}: a permission on the type needs type or instance level")

    @property
    def allow(self) -> tuple[str, ...]:
        """The HTTP methods it answers (the ``Allow`` header of its 405)."""
        return tuple(sorted(self.methods | ({"GET"} if self.poll is not None else set())))

    def handler_for(self, method: str) -> Handler | None:
        """The handler of ``method``, or None when the operation does not take it."""
        if method in self.methods:
            return self.handler
        if method == "GET" and self.poll is not None:
            return self.poll
        return None

    def definition_for(self, res_type: str | None) -> str:
        return dict(self.definitions).get(res_type or "", self.definition)
