"""Wiring of terminology into a running Hearth: one ``Terminology`` per process that resolves
canonical URLs against the stored CodeSystems / ValueSets / ConceptMaps (through the
repository's search) before the R4 content shipped in ``terminology/data``, plugged into the
search engine for token ``:in`` / ``:not-in`` / ``:below`` / ``:above`` and used by the
terminology operations (``fhir_server/rest/operations/{codesystem,valueset,conceptmap}_*.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fhir_server.rest.context import Context
from resources.storage.repository import Repository, Unit, current_connection
from terminology import Terminology
from terminology.resolve import Find, Probe

T = TypeVar("T")

MAX_MATCHES = 50  # stored resources sharing one canonical url that are looked at


def finder(repo: Repository) -> Find:
    """``find(res_type, query)``: the stored resources matching a search — inside the unit this
    runs in when there is one (a search's ``:in`` inside a transaction Bundle sees a ValueSet
    created earlier in it), else in a read-only unit of its own. Terminology resources are
    shared definitions, not patient data: the caller's compartment does not narrow them."""

    def find(res_type: str, query: Sequence[tuple[str, str]]) -> list[dict]:
        def fn(u: Unit) -> list[dict]:
            pks = u.match(res_type, list(query), limit=MAX_MATCHES)
            return [s.content for s in u.read_many(pks) if s.content is not None]

        return _in_current_unit(repo, fn)

    return find


def prober(repo: Repository) -> Probe:
    """``probe(res_type, query)``: ``(id, version, last_updated)`` of the stored matches, without
    their content, so the resolver fetches a resource only when it changed."""

    def probe(res_type: str, query: Sequence[tuple[str, str]]) -> Sequence[tuple[str, object, Any]]:
        def fn(u: Unit) -> Sequence[tuple[str, object, Any]]:
            return u.versions_of(u.match(res_type, list(query), limit=MAX_MATCHES))

        return _in_current_unit(repo, fn)

    return probe


def _in_current_unit(repo: Repository, fn: Callable[[Unit], T]) -> T:
    """Run ``fn`` in the unit this code runs inside (same transaction, same connection), or in a
    read-only unit of its own outside any."""
    conn = current_connection()
    if conn is not None and conn.engine is repo.engine:
        return fn(Unit(repo, conn))
    return repo.read(fn)


def install(ctx: Context) -> Terminology:
    repo = ctx.repo
    service = Terminology(
        finder(repo), probe=prober(repo), max_expansion=ctx.settings.max_expansion_size
    )
    ctx.services["terminology"] = service
    ctx.repo.search.terminology = service
    return service


def of(ctx: Context) -> Terminology:
    """The process's terminology service (built at start by ``install``)."""
    service = ctx.services.get("terminology")
    if service is None:
        service = install(ctx)
    return service
