"""Searching the audit log from a test, without a server: the AuditEvent search through the
search engine, as ``GET [base]/AuditEvent?...`` runs it for an administrator."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from resources.search import SearchEngine
from resources.search.engine import SearchRequest, run_search
from resources.storage.repository import Repository


def search_log(engine: sa.Engine, query: Sequence[tuple[str, str]]) -> list[dict]:
    """The AuditEvents matching ``query`` (one page of up to 1,000), in the search's order."""
    repo = Repository(engine, SearchEngine())
    req = SearchRequest("AuditEvent", list(query), default_count=1000)
    bundle = repo.read(lambda u: run_search(u, req, base="http://hearth.test/fhir"))
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
