"""Parameters answered from the ``resource`` table, and those not supported yet
(FHIR R4 search.html#all, #special).

``_id`` and ``_lastUpdated`` are columns of ``resource`` (the index holds no copy of them);
``_tag``, ``_profile``, ``_security`` and ``_source`` are ordinary token/uri parameters on
``Resource.meta`` and are indexed like any other; ``_list`` follows a List's ``item`` index. ``near`` (Location) and the full-text
parameters are not supported yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import NotSupported
from resources.search import date, keys
from resources.search.clauses import PkSet
from resources.search.parse import unescape
from resources.search.tables import idx_reference
from resources.storage.schema import resource

RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})
ID_MODIFIERS = frozenset({"not"})
LAST_UPDATED_MODIFIERS: frozenset[str] = frozenset()

# Recognised but not implemented: reported back to the caller (not silently ignored).
UNSUPPORTED = {
    "_text": "full-text search on the narrative (_text) is not supported yet",
    "_content": "full-text search on the resource content (_content) is not supported yet",
    "_query": "named queries (_query) are not supported",
    "_filter": "_filter is not supported",
}
# Result parameters whose values name what is not implemented: (values, why).
UNSUPPORTED_RESULT_VALUES: dict[str, tuple[frozenset[str], str]] = {}


# R4 list.html#functional-lists: the current lists a system keeps about a patient, as the
# search criteria (parameter, accepted codes) that select their members of each type they hold.
FUNCTIONAL_LISTS: dict[str, dict[str, tuple[tuple[str, tuple[str, ...]], ...]]] = {
    "$current-problems": {
        "Condition": (
            ("clinical-status", ("active", "recurrence", "relapse")),
            ("category", ("problem-list-item",)),
        ),
    },
    "$current-medications": {
        "MedicationStatement": (("status", ("active", "intended")),),
        "MedicationRequest": (("status", ("active",)),),
    },
    "$current-allergies": {
        "AllergyIntolerance": (("clinical-status", ("active",)),),
    },
    "$current-drug-allergies": {
        "AllergyIntolerance": (
            ("clinical-status", ("active",)),
            ("category", ("medication",)),
        ),
    },
}


def id_clause(modifier: str | None, values: Sequence[str], res_types: Sequence[str]) -> PkSet:
    ids = [unescape(v) for v in values]
    cond = resource.c.res_id == ids[0] if len(ids) == 1 else resource.c.res_id.in_(ids)
    return resource_set(res_types, cond, negated=modifier == "not")


def list_clause(
    values: Sequence[str],
    res_types: Sequence[str],
    visible: Callable[[sa.FromClause, str], list[ColumnElement]] | None = None,
) -> PkSet:
    """``_list=id`` (R4 search.html#list): the resources a List names in ``entry.item`` (the
    List's ``item`` index rows); several ids are OR-ed. The List itself must be one the caller
    may see (``visible``: the security filter), so a List of another patient names nothing.
    Functional lists (``$current-problems`` ...) are the compiler's (``FUNCTIONAL_LISTS``)."""
    ids = [unescape(v) for v in values]
    lists = resource.alias("list_")
    list_pks = sa.select(lists.c.pk).where(
        lists.c.res_type == "List",
        lists.c.res_id.in_(ids),
        lists.c.deleted.is_(False),
        *(visible(lists, "List") if visible is not None else ()),
    )
    ref = idx_reference.c
    items = sa.select(ref.target_type, ref.target_id).where(
        ref.hash_identity == keys.identity("List", "item"), ref.res_pk.in_(list_pks)
    )
    return resource_set(
        res_types, sa.tuple_(resource.c.res_type, resource.c.res_id).in_(items.correlate(None))
    )


def last_updated_clause(values: Sequence[str], res_types: Sequence[str]) -> PkSet:
    return resource_set(res_types, date.last_updated_clause(values, resource))


def resource_set(
    res_types: Sequence[str], cond: ColumnElement[bool], *, negated: bool = False
) -> PkSet:
    """The live resources of ``res_types`` whose ``resource`` row satisfies ``cond``."""
    stmt = sa.select(resource.c.pk).where(
        resource.c.res_type == res_types[0]
        if len(res_types) == 1
        else resource.c.res_type.in_(list(res_types)),
        resource.c.deleted.is_(False),
        cond,
    )
    return PkSet(stmt, negated=negated, unique=True)


def special_clause(code: str) -> PkSet:
    """Parameters of type ``special`` (R4: Location ``near``)."""
    raise NotSupported(f"the special search parameter {code!r} is not supported yet")
