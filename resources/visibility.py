"""What a caller may see, as SQL conditions on ``resource`` rows: the one security filter that
searches apply to their matches, counts and includes, that the search compiler applies to every
step of a chain and every ``_has`` (so a criterion about a row the caller cannot read matches as if
the row did not exist), and that conditional writes apply to their "search first".

- ``types``: the readable resource types (None: any).
- ``compartment`` / ``free_types``: a patient-context caller sees rows of types outside
  ``free_types`` only when they belong to the patient's compartment (R4
  compartmentdefinition-patient, through the reference index).
- ``released_only``: results not yet verified by a clinician are hidden (``unreleased``) -- a
  patient's own token does not see preliminary AI results.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from resources.schema import resource
from resources.search import keys
from resources.search.tables import idx_reference

# Results produced by software or a device (the AI models' Observations and RiskAssessments name
# their model Device here) that a patient sees only once a clinician has verified them.
RESULT_DEVICE_PARAMS = {"Observation": "device", "RiskAssessment": "performer"}
UNVERIFIED_STATUSES = ("registered", "preliminary")


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
    if security.released_only and (res_type is None or res_type in RESULT_DEVICE_PARAMS):
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
    """Rows that are results produced by a Device (an AI model) and not yet verified: status
    ``registered`` or ``preliminary``. A clinician's verification makes them ``final``."""
    t = table
    types = [res_type] if res_type is not None else sorted(RESULT_DEVICE_PARAMS)
    idents = [keys.identity(rt, RESULT_DEVICE_PARAMS[rt]) for rt in types]
    by_device = sa.select(idx_reference.c.res_pk).where(
        idx_reference.c.hash_identity.in_(idents), idx_reference.c.target_type == "Device"
    )
    conds = [
        t.c.content["status"].as_string().in_(UNVERIFIED_STATUSES),
        t.c.pk.in_(by_device),
    ]
    if res_type is None:
        conds.insert(0, t.c.res_type.in_(types))
    return sa.and_(*conds)


def compartment_members(
    comp_type: str, comp_id: str, table: sa.FromClause | None = None
) -> sa.ColumnElement:
    """Rows of any type in compartment ``comp_type/comp_id`` (the compartment resource too)."""
    from resources.compartments import all_compartment_params

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
