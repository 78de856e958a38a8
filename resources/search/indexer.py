"""Index rows of a resource: for every search parameter of its type, the values of the
parameter's expression, normalised by the parameter type's module into rows of the index tables
(FHIR R4 search.html; the tables are described in ``tables.py``).

``Indexer.rows_for(resource)`` returns ``(table, row)`` pairs without ``res_pk``; the repository
adds it and inserts the rows in the same transaction as the resource. The plan per resource type
(which parameters, their compiled extractors and identity keys) is built on first use and rebuilt
when the registry changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from resources.search import keys
from resources.search.definitions import SearchParam, SearchParameterRegistry
from resources.search.extract import ExpressionPlan
from resources.search.param_types import SEARCH_TYPES, IndexFn
from resources.search.tables import COLUMNS

log = logging.getLogger(__name__)

# Parameters answered from the resource table itself, or not indexable.
NOT_INDEXED = frozenset({"_id", "_lastUpdated", "_text", "_content", "_query", "_list"})


@dataclass
class _Entry:
    param: SearchParam
    ident: int
    plan: ExpressionPlan
    index: IndexFn


class Indexer:
    """Builds index rows for resources, with plans cached per resource type."""

    def __init__(
        self,
        registry: SearchParameterRegistry,
        *,
        base_urls: Sequence[str] = (),
        allow_fast: bool = True,
    ) -> None:
        self.registry = registry
        self.base_urls = tuple(b.rstrip("/") for b in base_urls)
        self.allow_fast = allow_fast
        self._plans: dict[str, list[_Entry]] = {}
        self._generation = registry.generation
        self._lock = threading.Lock()

    def plan(self, res_type: str) -> list[_Entry]:
        if self._generation != self.registry.generation:
            with self._lock:
                self._plans = {}
                self._generation = self.registry.generation
        entries = self._plans.get(res_type)
        if entries is None:
            entries = self._build(res_type)
            self._plans[res_type] = entries
        return entries

    def _build(self, res_type: str) -> list[_Entry]:
        entries = []
        for code, param in sorted(self.registry.for_type(res_type).items()):
            if code in NOT_INDEXED or not param.expression:
                continue
            stype = SEARCH_TYPES.get(param.type)
            if stype is None or stype.index is None:
                continue
            try:
                plan = ExpressionPlan(res_type, param.expression, allow_fast=self.allow_fast)
            except Exception:  # noqa: BLE001 - a bad custom expression must not stop indexing
                log.exception("cannot compile %s for %s", param.url, res_type)
                continue
            if not plan.parts:
                continue
            index = stype.index(param, res_type, self)
            entries.append(_Entry(param, keys.identity(res_type, code), plan, index))
        return entries

    def raw_rows(self, resource: dict) -> set[tuple[sa.Table, tuple]]:
        """The distinct rows as (table, values in column order without res_pk)."""
        res_type = resource.get("resourceType")
        if not isinstance(res_type, str):
            return set()
        out: list = []
        for entry in self.plan(res_type):
            values = entry.plan(resource)
            if values:
                entry.index(entry.ident, values, resource, out)
        contained = resource.get("contained")
        if isinstance(contained, list):
            self._contained_rows(contained, out)
        return set(out)

    def _contained_rows(self, contained: list, out: list) -> None:
        """The rows of each contained resource, under its type's contained identities
        (``keys.contained_identity``), for ``_contained`` searches; they belong to the
        container's row. Composite parameters are left out (not searched within contained
        resources)."""
        for inner in contained:
            inner_type = inner.get("resourceType") if isinstance(inner, dict) else None
            if not isinstance(inner_type, str) or not self.registry.is_resource_type(inner_type):
                continue
            for entry in self.plan(inner_type):
                if entry.param.type == "composite":
                    continue
                values = entry.plan(inner)
                if values:
                    ident = keys.contained_identity(inner_type, entry.param.code)
                    entry.index(ident, values, inner, out)

    def rows_for(self, resource: dict) -> list[tuple[sa.Table, dict]]:
        """Index rows of ``resource`` as ``(table, row)``, without ``res_pk``."""
        rows = []
        for table, values in self.raw_rows(resource):
            cols = COLUMNS[table]
            rows.append((table, dict(zip(cols[1:], values, strict=True))))
        return rows


_default: Indexer | None = None
_default_lock = threading.Lock()


def default_indexer() -> Indexer:
    """An indexer over the official R4 definitions, built on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Indexer(SearchParameterRegistry.load_default())
    return _default


def rows_for(resource: dict) -> list[tuple[sa.Table, dict]]:
    """Index rows of ``resource`` under the official R4 definitions (see ``Indexer.rows_for``)."""
    return default_indexer().rows_for(resource)
