"""The search-parameter types (FHIR R4 search.html#ptypes), one declaration each.

``SEARCH_TYPES[type]`` is a ``SearchType``: the index table its rows go to, how a resource's
values become rows (``index``), the modifiers it accepts, how one criterion compiles to a set of
primary keys (``clause``) and which columns ``_sort`` reads. The indexer and the compiler read
this table and nothing else to dispatch on a parameter's type, so adding a type is one entry here
(plus its module and its test; docs/extending.md, "Add a search parameter type").

The functions are uniform wrappers around the type modules (``string.py``, ``token.py`` ...);
what some of them need beyond the values comes from the caller as an ``IndexContext`` (the
``Indexer``) or a ``ClauseContext`` (the ``Compiler``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from resources.search import (
    composite,
    date,
    number,
    quantity,
    reference,
    special,
    string,
    token,
    uri,
)
from resources.search.clauses import PkSet, Target
from resources.search.definitions import SearchParam, SearchParameterRegistry
from resources.search.extract import Value
from resources.search.tables import (
    idx_composite,
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
)

log = logging.getLogger(__name__)

# (identity key, the parameter's values in a resource, the resource, rows out)
IndexFn = Callable[[int, list[Value], dict, list], None]


class IndexContext(Protocol):
    """What building an index function may need (the ``Indexer`` provides it)."""

    registry: SearchParameterRegistry
    base_urls: tuple[str, ...]


class ClauseContext(Protocol):
    """What compiling a criterion may need (the ``Compiler`` provides it)."""

    registry: SearchParameterRegistry
    base_urls: tuple[str, ...]
    terminology: token.CodeSets | None
    visible: Callable[[sa.FromClause, str], list[sa.ColumnElement[bool]]] | None


# (parameter, resource type, context) -> the index function of that parameter on that type
IndexFactory = Callable[[SearchParam, str, IndexContext], IndexFn]
# (target, modifier, values, context) -> the matching primary keys
ClauseFn = Callable[[Target, "str | None", Sequence[str], ClauseContext], PkSet]


@dataclass(frozen=True)
class SearchType:
    """One search-parameter type.

    ``table``: its index table (None: nothing is indexed). ``index``: builds the function that
    turns a parameter's values into rows of ``table`` (None: not indexed). ``modifiers``: the
    modifiers it accepts (``missing`` included where supported). ``type_modifiers``: a resource
    type is a modifier too (``subject:Patient``). ``clause``: one criterion with its values.
    ``sort``: the columns a resource's sort value is the lowest (ascending) / highest
    (descending) of (None: cannot sort). ``sort_walk``: the table has B-trees on
    ``(hash_identity, low, high)`` and ``(hash_identity, high, low)``, so a one-key sort can
    walk them (``Compiler.sort_index``)."""

    name: str
    table: sa.Table | None
    index: IndexFactory | None
    modifiers: frozenset[str]
    clause: ClauseFn
    sort: tuple[str, str] | None = None
    sort_walk: bool = False
    type_modifiers: bool = False


def _plain(fn: Callable[[int, list[Value], list], None]) -> IndexFactory:
    """An index function that needs only the values."""

    def factory(param: SearchParam, res_type: str, ctx: IndexContext) -> IndexFn:
        return lambda ident, values, resource, out: fn(ident, values, out)

    return factory


def _reference_index(param: SearchParam, res_type: str, ctx: IndexContext) -> IndexFn:
    bases = ctx.base_urls
    return lambda ident, values, resource, out: reference.index(ident, values, out, bases)


def _composite_index(param: SearchParam, res_type: str, ctx: IndexContext) -> IndexFn:
    try:
        comp = composite.CompositeIndexer(param, ctx.registry, res_type)
    except Exception:  # noqa: BLE001 - NotSupported layouts are simply not indexed
        log.info("composite %s is not indexed", param.url)
        return lambda ident, values, resource, out: None
    return comp.index


def _special_clause(
    target: Target, modifier: str | None, values: Sequence[str], ctx: ClauseContext
) -> PkSet:
    return special.special_clause(target.code)


SEARCH_TYPES: dict[str, SearchType] = {
    t.name: t
    for t in (
        SearchType(
            "string",
            idx_string,
            _plain(string.index),
            string.MODIFIERS,
            lambda target, modifier, values, ctx: string.clause(target, modifier, values),
            sort=("value_norm", "value_norm"),
        ),
        SearchType(
            "token",
            idx_token,
            _plain(token.index),
            token.MODIFIERS,
            lambda target, modifier, values, ctx: token.clause(
                target, modifier, values, ctx.terminology
            ),
            sort=("value", "value"),
        ),
        SearchType(
            "reference",
            idx_reference,
            _reference_index,
            reference.MODIFIERS,
            lambda target, modifier, values, ctx: reference.clause(
                target, modifier, values, ctx.base_urls, ctx.registry, ctx.visible
            ),
            sort=("target_id", "target_id"),
            type_modifiers=True,
        ),
        SearchType(
            "date",
            idx_date,
            _plain(date.index),
            date.MODIFIERS,
            lambda target, modifier, values, ctx: date.clause(target, modifier, values),
            sort=("low", "high"),
            sort_walk=True,
        ),
        SearchType(
            "number",
            idx_number,
            _plain(number.index),
            number.MODIFIERS,
            lambda target, modifier, values, ctx: number.clause(target, modifier, values),
            sort=("low", "high"),
            sort_walk=True,
        ),
        SearchType(
            "quantity",
            idx_quantity,
            _plain(quantity.index),
            quantity.MODIFIERS,
            lambda target, modifier, values, ctx: quantity.clause(target, modifier, values),
            sort=("low", "high"),
        ),
        SearchType(
            "uri",
            idx_uri,
            _plain(uri.index),
            uri.MODIFIERS,
            lambda target, modifier, values, ctx: uri.clause(target, modifier, values),
            sort=("uri", "uri"),
        ),
        SearchType(
            "composite",
            idx_composite,
            _composite_index,
            composite.MODIFIERS,
            lambda target, modifier, values, ctx: composite.clause(
                target, modifier, values, ctx.registry
            ),
        ),
        # R4's only special parameter is Location ``near``: recognised, not supported yet.
        SearchType(
            "special",
            None,
            None,
            frozenset({"missing"}),
            _special_clause,
        ),
    )
}
