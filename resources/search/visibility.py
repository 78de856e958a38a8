"""What a caller may see, as SQL conditions on ``resource`` rows: the one security filter that
searches apply to their matches, counts and includes, that the search compiler applies to every
step of a chain and every ``_has`` (so a criterion about a row the caller cannot read matches as if
the row did not exist), and that conditional writes apply to their "search first".

- ``types``: the readable resource types (None: any).
- ``compartment`` / ``free_types``: a patient-context caller sees rows of types outside
  ``free_types`` only when they belong to the patient's compartment (R4
  compartmentdefinition-patient, through the reference index).
- ``released_only``: results not yet verified by a clinician are hidden (``unreleased``) -- a
  patient's own token does not see preliminary AI results, nor the records that tell of them
  (those labelled ``UNVERIFIED_AI`` in ``meta.security``: AI analysis Tasks, heatmap Media, a
  case's Tasks and its proposed Appointment after an AI result, until a clinician verified it).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from resources.search import keys
from resources.search.tables import idx_reference, idx_token
from resources.storage.schema import resource

# Results produced by software or a device (the AI models' Observations and RiskAssessments name
# their model Device here) that a patient sees only once a clinician has verified them.
RESULT_DEVICE_PARAMS = {"Observation": "device", "RiskAssessment": "performer"}
UNVERIFIED_STATUSES = ("registered", "preliminary")

# A security label (``meta.security``) on records derived from an AI result that a clinician has
# not verified yet: the AI analysis Tasks, the heatmap Media explaining a result, and, once an AI
# result is recorded on a case, the case Task, its step Tasks and the Appointment it proposed.
# The workflow writes it and takes it off when a doctor's step verifies the result; while it is
# there, a ``released_only`` caller sees the row as if it did not exist. Only the types below
# carry it (the filter looks it up per type in the token index).
UNVERIFIED_AI = {
    "system": "http://hearth.local/fhir/CodeSystem/security",
    "code": "unverified-ai",
    "display": "Derived from an AI result not yet verified by a clinician",
}
LABELLED_TYPES = ("Appointment", "Media", "Task")
HIDDEN_TYPES = frozenset(RESULT_DEVICE_PARAMS) | frozenset(LABELLED_TYPES)


def with_unverified_label(body: dict) -> dict:
    """``body`` carrying the ``UNVERIFIED_AI`` label (once)."""
    meta = dict(body.get("meta") or {})
    labels = [c for c in meta.get("security") or [] if not _is_label(c)]
    meta["security"] = [*labels, dict(UNVERIFIED_AI)]
    return {**body, "meta": meta}


def without_unverified_label(body: dict) -> dict:
    """``body`` without the ``UNVERIFIED_AI`` label."""
    meta = dict(body.get("meta") or {})
    labels = [c for c in meta.get("security") or [] if not _is_label(c)]
    if labels:
        meta["security"] = labels
    else:
        meta.pop("security", None)
    return {**body, "meta": meta} if meta else {k: v for k, v in body.items() if k != "meta"}


def has_unverified_label(body: dict) -> bool:
    return any(_is_label(c) for c in (body.get("meta") or {}).get("security") or [])


def _is_label(coding: object) -> bool:
    return (
        isinstance(coding, dict)
        and coding.get("system") == UNVERIFIED_AI["system"]
        and coding.get("code") == UNVERIFIED_AI["code"]
    )


@dataclass(frozen=True)
class Security:
    """The caller's limits, added to the base query, to every include and to every chained or
    reverse-chained step: only ``types`` (None: any), rows of types outside ``free_types`` (None:
    every type is free) only when they belong to ``compartment`` (a patient-context caller), and
    with ``released_only`` no result a clinician has not verified yet (``unreleased``)."""

    types: frozenset[str] | None = None
    compartment: tuple[str, str] | None = None
    free_types: frozenset[str] | None = frozenset()
    released_only: bool = False
    # What the caller may read in full (SMART ``r``), where it is narrower than what it may
    # find (``r`` or ``s``: the fields above); None: the same. Searches ignore it; a
    # Subscription's notifications carry content only where it allows (else id-only).
    content: Security | None = None

    def scope_key(self) -> str:
        """A short text naming what this filter lets through, for keys that must not be shared
        between callers who see different rows (conditional-create claims)."""
        if self.compartment is None and not self.released_only:
            return ""
        comp = "/".join(self.compartment) if self.compartment else ""
        return f"{comp}{'|released' if self.released_only else ''}"


def secured(
    security: Security, res_type: str | None = None, table: sa.FromClause | None = None
) -> list[sa.ColumnElement]:
    """The security filter on ``table`` (``resource`` or an alias of it) as a condition list.
    ``res_type``: the rows filtered are known to be of that type, so what depends on the type
    alone is decided here rather than by a condition (an ``IN`` of a hundred types on every
    row, and as many bound parameters in the SQL text)."""
    t = resource if table is None else table
    conds: list[sa.ColumnElement] = []
    if security.types is not None:
        if res_type is None:
            conds.append(t.c.res_type.in_(sorted(security.types)))
        elif res_type not in security.types:
            return [sa.false()]
    if security.released_only and (res_type is None or res_type in HIDDEN_TYPES):
        conds.append(sa.not_(unreleased(t, res_type)))
    if security.compartment is not None and security.free_types is not None:
        if res_type is not None and res_type in security.free_types:
            return conds
        members = compartment_members(*security.compartment, table=t)
        if security.free_types and res_type is None:
            members = sa.or_(t.c.res_type.in_(sorted(security.free_types)), members)
        conds.append(members)
    return conds


def unreleased(table: sa.FromClause, res_type: str | None = None) -> sa.ColumnElement:
    """Rows a clinician has not verified yet: results produced by a Device (an AI model) with
    status ``registered`` or ``preliminary`` (a clinician's verification makes them ``final``),
    and records labelled ``UNVERIFIED_AI`` (the label is taken off by that verification)."""
    t = table
    conds: list[sa.ColumnElement] = []
    result_types = [rt for rt in sorted(RESULT_DEVICE_PARAMS) if res_type in (None, rt)]
    if result_types:
        idents = [keys.identity(rt, RESULT_DEVICE_PARAMS[rt]) for rt in result_types]
        by_device = sa.select(idx_reference.c.res_pk).where(
            idx_reference.c.hash_identity.in_(idents), idx_reference.c.target_type == "Device"
        )
        result = [
            t.c.content["status"].as_string().in_(UNVERIFIED_STATUSES),
            t.c.pk.in_(by_device),
        ]
        if res_type is None:
            result.insert(0, t.c.res_type.in_(result_types))
        conds.append(sa.and_(*result))
    labelled_types = [rt for rt in LABELLED_TYPES if res_type in (None, rt)]
    if labelled_types:
        label = [
            keys.combine(
                keys.identity(rt, "_security"), "sv", UNVERIFIED_AI["system"], UNVERIFIED_AI["code"]
            )
            for rt in labelled_types
        ]
        conds.append(
            t.c.pk.in_(sa.select(idx_token.c.res_pk).where(idx_token.c.hash_sys_value.in_(label)))
        )
    return sa.or_(*conds) if conds else sa.false()


def compartment_members(
    comp_type: str, comp_id: str, table: sa.FromClause | None = None
) -> sa.ColumnElement:
    """Rows of any type in compartment ``comp_type/comp_id`` (the compartment resource too)."""
    from resources.search.compartments import all_compartment_params

    t = resource if table is None else table
    idents = [keys.identity(rt, p) for rt, p in all_compartment_params(comp_type)]
    members = sa.select(idx_reference.c.res_pk).where(
        idx_reference.c.hash_identity.in_(idents),
        idx_reference.c.target_type == comp_type,
        idx_reference.c.target_id == comp_id,
    )
    return sa.or_(
        sa.and_(t.c.res_type == comp_type, t.c.res_id == comp_id),
        t.c.pk.in_(members),
    )


def visible_in(security: Security | None):  # type: ignore[no-untyped-def]
    """The compiler's hook for ``security``: conditions on a ``resource`` alias of one type, for
    each step of a chain and each ``_has`` (None: no limits)."""
    if security is None:
        return None

    def visible(table: sa.FromClause, res_type: str) -> list[sa.ColumnElement]:
        return secured(security, res_type, table)

    return visible
