"""Enforcement: which SMART scope permission each FHIR interaction needs, checked before it runs
(every entry of a batch/transaction too), and the patient-compartment guard that the repository
calls on every row a patient-context request reads or writes. Searches get one ``Security``
filter, applied to the matches, the counts and every ``_include``/``_revinclude``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fhir_server.rest.context import Access, Context, FhirRequest
from fhir_server.rest.operations.registry import operations
from resources.errors import Forbidden, Gone, MethodNotAllowed, NotFound
from resources.search.engine import Security, is_member, is_unreleased
from resources.search.parse import asks_explain, chain_types
from resources.storage.repository import Unit
from resources.storage.transaction import ParsedBundle

PERM = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "history-type": "r",
    "history-system": "r",
    "search-type": "s",
    "search-system": "s",
    "search-compartment": "s",
    "create": "c",
    "update": "u",
    "conditional-update": "u",
    "patch": "u",
    "delete": "d",
    "conditional-delete": "d",
}
ENTRY_PERM = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}
ADMIN_ONLY_TYPES = frozenset({"AuditEvent"})
# Types kept in the append-only audit log: administrators read, search and append (create);
# update, patch and delete are refused (405), and so is any write inside a Bundle.
APPEND_ONLY_TYPES = frozenset({"AuditEvent"})
# Types a patient-context token with read access reads beyond its compartment: a doctor's free
# and busy times (a Slot names its Schedule, never a patient), which a patient needs to book
# ($book, docs/workflow.md). Writing them stays with the workflow operations.
PATIENT_OPEN_TYPES = frozenset({"Slot"})


def require(access: Access, res_type: str, perm: str) -> str:
    """The access mode ("all" or "patient") for ``perm`` on ``res_type``; 403 when none."""
    if res_type in ADMIN_ONLY_TYPES and not access.is_admin:
        raise Forbidden(f"{res_type} resources are for administrators only")
    if res_type in APPEND_ONLY_TYPES and perm in "ud":
        raise MethodNotAllowed(
            f"{res_type} resources live in the append-only audit log: they cannot be changed"
        )
    mode = access.mode(res_type, perm)
    if mode is None:
        raise Forbidden(f"the token's scopes do not allow {_WORDS[perm]} {res_type} resources")
    return mode


_WORDS = {"c": "creating", "r": "reading", "u": "updating", "d": "deleting", "s": "searching"}


def needs_compartment(access: Access, res_type: str) -> bool:
    """Whether rows of ``res_type`` are visible to ``access`` only inside its patient's
    compartment (no user- or system-level grant covers the type)."""
    if access.patient is None:
        return False
    if res_type in PATIENT_OPEN_TYPES and access.mode(res_type, "r") is not None:
        return False
    return not any(access.mode(res_type, p) == "all" for p in "cruds")


def authorize(
    ctx: Context,
    access: Access,
    interaction: str,
    req: FhirRequest,
    on_commit: Callable[[Unit], None] | None = None,
) -> Context:
    """Check ``interaction`` against ``access``; return the request's own Context, whose
    repository carries the compartment guard and the audit hook of its writes."""
    res_type = req.res_type
    if asks_explain(req.query) and not access.is_admin:
        raise Forbidden("_explain shows the server's SQL: administrators only")
    if interaction.startswith("search"):
        _chains(access, req.query)
    if interaction in ("transaction", "batch"):
        _bundle(access, req.bundle)
    elif interaction == "operation":
        _operation(access, req)
    elif interaction == "search-system" or interaction == "history-system":
        types = {t for k, v in req.query if k == "_type" for t in v.split(",") if t}
        if interaction == "history-system":
            if access.patient is not None and not access.is_admin:
                raise Forbidden("system history is not available to patient-context tokens")
            if access.scopes.types_for("r") is not None:
                raise Forbidden("system history needs read access to every resource type")
        for t in types:
            require(access, t, "s")
    else:
        assert res_type is not None
        mode = require(access, res_type, PERM[interaction])
        if interaction in ("conditional-update", "conditional-delete") or (
            interaction == "create" and "if-none-exist" in req.headers
        ):
            require(access, res_type, "s")  # a conditional interaction searches first
        if interaction == "history-type" and mode == "patient":
            raise Forbidden("type history is not available to patient-context tokens")
        if interaction == "search-compartment":
            require(access, req.path.split("/")[0], "r")
    security = search_security(access, res_type)
    return replace(ctx, access=access, repo=ctx.repo.guarded(_guard(access), on_commit, security))


def _operation(access: Access, req: FhirRequest) -> None:
    """The permission the operation declares (``OPERATION.permission``,
    fhir_server/rest/operations/spec.py): a SMART permission on the type it is invoked on, an
    administrator, or a valid token when the operation checks the scopes itself."""
    name = req.path.rsplit("$", 1)[-1]
    op = operations().get(name)
    if op is None:
        raise NotFound(f"operation ${name} is not supported")
    permission = op.permission
    if permission.self_checked:
        return
    if permission.admin or req.res_type is None:
        if not access.is_admin:
            raise Forbidden(f"${name} is for administrators only")
        return
    assert permission.type_perm is not None
    require(access, req.res_type, permission.type_perm)


def _chains(access: Access, query: list[tuple[str, str]]) -> None:
    """Chained parameters (``subject:Patient.name``) and ``_has`` look into other resources:
    the token must be able to search each type they name; a chain that names no type
    (``subject.name``) needs search access to every type."""
    for key, _ in query:
        named = chain_types(key)  # the search's own parser: None when not a chain (or invalid)
        if named is None:
            continue
        if not named:
            if access.scopes.types_for("s") is not None:
                raise Forbidden(
                    f"the chained parameter {key!r} names no resource type: name it "
                    "(e.g. subject:Patient.name) so its scope can be checked"
                )
            continue
        for res_type in named:
            require(access, res_type, "s")


def _bundle(access: Access, bundle: ParsedBundle | None) -> None:
    """Each entry's permission, on the entries parsed once (``gate.run``) that the transaction
    interaction then runs. A batch entry that does not parse is left out: it touches nothing and
    gets its own 400 in the batch-response (a transaction fails as a whole, at the parse)."""
    if bundle is None:
        return  # not a Bundle: the transaction interaction reports the malformed body
    for e in bundle.parsed():
        perms = []
        if e.method in ("GET", "HEAD"):
            perms.append("s" if e.res_id is None else "r")
        else:
            perms.append(ENTRY_PERM[e.method])
            if e.if_none_exist or (e.res_id is None and e.method != "POST"):
                perms.append("s")  # conditional: it searches first
        try:
            if e.res_type in APPEND_ONLY_TYPES and e.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(
                    f"{e.res_type} is appended to the audit log by POST [base]/{e.res_type} "
                    "alone, not inside a Bundle"
                )
            for perm in perms:
                require(access, str(e.res_type), perm)
            if e.method in ("GET", "HEAD") and e.res_id is None:
                if asks_explain(e.query) and not access.is_admin:
                    raise Forbidden("_explain shows the server's SQL: administrators only")
                _chains(access, e.query)
        except Forbidden as exc:
            raise Forbidden(f"Bundle.entry[{e.index}]: {exc.diagnostics}") from None
        except MethodNotAllowed as exc:
            raise MethodNotAllowed(f"Bundle.entry[{e.index}]: {exc.diagnostics}") from None


def _guard(access: Access):  # type: ignore[no-untyped-def]
    if access.patient is None:
        return None
    patient = access.patient

    released_only = released_only_for(access)

    def guard(unit: Unit, res_type: str, pk: int, written: bool) -> None:
        if released_only and not written and is_unreleased(unit, res_type, pk):
            # An unverified result reads exactly as an id that never existed.
            raise NotFound(f"{res_type}/{unit.res_id_of(pk)} is not known")
        if not needs_compartment(access, res_type) or is_member(unit, pk, "Patient", patient):
            return
        if res_type == "Binary" and not written and _context_readable(unit, pk):
            return
        if written:
            raise Forbidden(
                f"a patient-context token may only write resources in Patient/{patient}'s "
                "compartment"
            )
        # The same answer as for an id that never existed: nothing about other patients leaks.
        raise NotFound(f"{res_type}/{unit.res_id_of(pk)} is not known")

    return guard


def _context_readable(unit: Unit, pk: int) -> bool:
    """R4 binary.html#security: a Binary (in no compartment itself) is read with the access of
    the resource its ``securityContext`` names — e.g. a report's PDF with the report's. The
    context is read through the same guarded unit, so it must be in the compartment too."""
    found = unit.read_many([pk])
    context = ((found[0].content or {}).get("securityContext") or {}) if found else {}
    res_type, _, res_id = str(context.get("reference", "")).partition("/")
    if not res_id or res_type == "Binary":
        return False
    try:
        unit.read(res_type, res_id)
    except (NotFound, Gone):
        return False
    return True


def search_security(access: Access | None, res_type: str | None) -> Security | None:
    """The security filter of a search by ``access`` (None: unrestricted, e.g. operators): the
    readable types, and for a patient-context token the compartment that rows of every type not
    covered by a user- or system-level grant must belong to — on the matches, the counts and
    every include alike. Where SMART ``r`` alone reaches less far than ``r`` or ``s`` (a type
    the token may search but not read), that narrower filter rides along as ``content``: a
    Subscription's notifications carry a resource's content only within it (id-only beyond)."""
    if access is None:
        return None
    found = _security(access, "rs")
    content = _security(access, "r")
    return found if content == found else replace(found, content=content)


def _security(access: Access, perms: str) -> Security:
    """The filter of what the grants with any of ``perms`` reach."""
    types: frozenset[str] | None = frozenset()
    for perm in perms:
        some = access.scopes.types_for(perm)
        types = None if some is None or types is None else types | some
    if not access.is_admin:
        types = _without_admin_types(types)
    if access.patient is None:
        return Security(types=types)
    released_only = released_only_for(access)
    free: set[str] = set()
    for g in access.scopes.grants:
        if g.context == "system" or (g.context == "user" and access.role != "patient"):
            if g.perms & set(perms):
                free.add(g.res_type)
    # the open types (Slot) are free to those who may search them (and, for content, read them)
    open_perm = "s" if "s" in perms else "r"
    free |= {t for t in PATIENT_OPEN_TYPES if access.mode(t, open_perm) is not None}
    if "*" in free:
        return Security(types=types, released_only=released_only)
    return Security(
        types=types,
        compartment=("Patient", access.patient),
        free_types=frozenset(free),
        released_only=released_only,
    )


# Roles that take part in care (docs/workflow.md); a patient-context token held by anyone else
# (the patient, an app acting for them) sees results only once a clinician has verified them.
CARE_ROLES = frozenset({"doctor", "pharmacist", "cadre", "admin"})


def released_only_for(access: Access) -> bool:
    """Whether ``access`` sees only verified results (``resources.search.visibility.unreleased``): a
    patient-context token not held by a member of the care team."""
    return access.patient is not None and access.role not in CARE_ROLES


def _without_admin_types(types: frozenset[str] | None) -> frozenset[str] | None:
    if types is None:
        from resources.validation import resource_types

        return frozenset(resource_types()) - ADMIN_ONLY_TYPES
    return types - ADMIN_ONLY_TYPES
