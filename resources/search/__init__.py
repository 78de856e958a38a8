"""FHIR R4 search (search.html): search parameter definitions, index tables, extraction of
index rows from resources, and the compiler from a search query to SQL.

``SearchEngine`` is the one object the repository and the HTTP layer use; build it once at start
(it reads the bundled definitions, ~0.1 s), never at import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from resources.errors import Invalid
from resources.search import writer
from resources.search.compiler import CompiledSearch, Compiler, SortIndex, Visible
from resources.search.definitions import SearchParam, SearchParameterRegistry
from resources.search.indexer import Indexer
from resources.search.parse import (
    Include,
    ParsedQuery,
    ResultParams,
    Unsupported,
    parse_query,
)
from resources.search.tables import INDEX_TABLES, index_tables
from resources.search.token import CodeSets

__all__ = [
    "INDEX_TABLES",
    "CodeSets",
    "CompiledSearch",
    "Include",
    "ParsedQuery",
    "ResultParams",
    "SearchEngine",
    "SearchParam",
    "SearchParameterRegistry",
    "SortIndex",
    "Unsupported",
    "index_tables",
    "parse_query",
]

Query = Sequence[tuple[str, str]]


class SearchEngine:
    """Indexing and search over one registry of search parameters.

    ``base_urls``: this server's own base URL(s); absolute references starting with one are
    indexed and searched as relative (``Patient/123``).
    """

    def __init__(
        self,
        registry: SearchParameterRegistry | None = None,
        *,
        base_urls: Sequence[str] = (),
        allow_fast: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else SearchParameterRegistry.load_default()
        self.indexer = Indexer(self.registry, base_urls=base_urls, allow_fast=allow_fast)
        self.compiler = Compiler(self.registry, base_urls=base_urls)

    @property
    def terminology(self) -> CodeSets | None:
        """The service token ``:in`` / ``:not-in`` / ``:below`` / ``:above`` ask (ValueSet
        expansions, code system hierarchies); the application sets it at start."""
        return self.compiler.terminology

    @terminology.setter
    def terminology(self, service: CodeSets | None) -> None:
        self.compiler.terminology = service

    # -- indexing ------------------------------------------------------------------------------
    def rows_for(self, resource: dict) -> list[tuple[sa.Table, dict]]:
        """Index rows of ``resource`` as ``(table, row)``; the caller adds ``res_pk``."""
        return self.indexer.rows_for(resource)

    def index_tables(self) -> tuple[sa.Table, ...]:
        return INDEX_TABLES

    def index(self, conn: sa.Connection, items: Iterable[tuple[int, dict]]) -> int:
        """Compute and insert the index rows of ``(resource.pk, resource)`` pairs in ``conn``'s
        transaction (one statement per table on PostgreSQL); returns the number of rows."""
        rows: list[tuple[sa.Table, tuple]] = []
        raw_rows = self.indexer.raw_rows
        for pk, content in items:
            rows.extend((table, (pk, *values)) for table, values in raw_rows(content))
        return writer.insert_rows(conn, rows)

    def unindex(self, conn: sa.Connection, pks: Sequence[int]) -> None:
        """Delete every index row of the resources ``pks``."""
        writer.delete_rows(conn, pks)

    def add_search_parameter(self, sp: dict) -> SearchParam:
        """Register a custom SearchParameter; resources stored before need re-indexing."""
        return self.registry.add(sp)

    # -- search --------------------------------------------------------------------------------
    def compile(
        self, res_type: str | None, query: Query | ParsedQuery, *, visible: Visible | None = None
    ) -> CompiledSearch:
        """``SELECT pk`` (resource primary keys, each once) for a type-level search (or a
        system-level one, with ``res_type=None``), from the query pairs or the query parsed once
        by the caller (``parse_query``; ``_page`` and ``_explain`` are the caller's to apply);
        unknown parameters come back in
        ``unsupported``, result parameters in ``result``. ``visible``: the caller's security
        filter for the resources chains and ``_has`` look into (None: all)."""
        return self.compiler.compile(res_type, query, visible=visible)

    def match(self, res_type: str, query: Query, *, visible: Visible | None = None) -> sa.Select:
        """The select for conditional create/update/delete, where every criterion must be
        applied: unknown parameters raise ``Invalid``, and result parameters are ignored."""
        parsed = parse_query(query)
        compiled = self.compiler.compile(res_type, parsed, visible=visible)
        unsupported = [
            Unsupported(name, value, f"{name} pages or explains a search; it is not a criterion")
            for name, value in parsed.control
        ] + compiled.unsupported
        if unsupported:
            raise Invalid(
                "search parameters not understood: "
                + "; ".join(f"{u.name}: {u.reason}" for u in unsupported)
            )
        return compiled.select

    def sort_keys(
        self,
        res_type: str | None,
        sort: str | Sequence[tuple[str, bool]],
        pk: sa.ColumnElement | None = None,
    ) -> list[tuple[sa.ColumnElement, bool]]:
        """``(expression, descending)`` per ``_sort`` key (correlated to ``pk``, default
        ``resource.pk``), without the pk tie-break: for keyset paging cursors."""
        return self.compiler.sort_keys(res_type, sort, pk)

    def sort_index(
        self, res_type: str | None, sort: str | Sequence[tuple[str, bool]]
    ) -> SortIndex | None:
        """For a one-key ``_sort`` on a date or number parameter: the index rows that give the
        sort value, so a page can walk them in order (None otherwise)."""
        return self.compiler.sort_index(res_type, sort)

    def ordered(
        self, res_type: str | None, select: sa.Select, sort: str | Sequence[tuple[str, bool]]
    ) -> sa.Select:
        """``SELECT pk`` of ``select``'s matches in ``_sort`` order (pk breaks ties); page it
        with ``.limit()`` / ``.offset()``."""
        return self.compiler.ordered(res_type, select, sort)

    def sort_by(
        self,
        res_type: str | None,
        sort: str | Sequence[tuple[str, bool]],
        pk: sa.ColumnElement | None = None,
    ) -> list:
        """ORDER BY clauses for ``_sort`` on a query whose rows carry the resource primary key
        ``pk`` (default ``resource.pk``: a query FROM ``resource``). Do not apply them to
        ``compile(...).select`` itself (it reads index tables, not ``resource``); use
        ``ordered`` or ``select(resource.c.pk).where(resource.c.pk.in_(select))``."""
        return self.compiler.sort_by(res_type, sort, pk)
