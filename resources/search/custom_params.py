"""Custom SearchParameter resources (FHIR R4 search.html#custom): checked when written, and the
search registry of every process kept in step with the database.

A SearchParameter whose ``status`` is ``active`` becomes a search parameter once its
transaction commits (in this process at once, in other worker processes at their next check, at
most ``interval`` seconds later). It may not shadow a built-in parameter of the same base and
code. Resources stored before it was added are found by it after ``hearth reindex``.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from resources.errors import Unprocessable
from resources.search import SearchEngine
from resources.search.definitions import SearchParam, check_expression
from resources.storage.schema import resource


class CustomParams:
    """Tracks which custom SearchParameters are active in one SearchEngine."""

    def __init__(self, engine: SearchEngine, *, interval: float = 5.0) -> None:
        self.engine = engine
        self.interval = interval
        self.builtin = {p.url: p for p in engine.registry}
        self.active: dict[str, str] = {}  # url -> versionId of the stored resource
        self._seen: object = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def check(self, content: dict) -> SearchParam | None:
        """Raise if an active SearchParameter cannot be used; returns it (or None if inactive)."""
        if content.get("status") != "active":
            return None
        param = SearchParam.from_resource(content)
        if param.expression:
            check_expression(param.expression)
        if param.url in self.builtin:
            raise Unprocessable(
                f"{param.url} is a built-in search parameter and cannot be redefined"
            )
        for base in param.base:
            existing = self.engine.registry.get(base, param.code)
            if existing is not None and existing.url in self.builtin:
                raise Unprocessable(
                    f"search parameter {param.code!r} on {base} is built in ({existing.url}); "
                    "a custom SearchParameter may not shadow it",
                    expression=["SearchParameter.code"],
                )
        return param

    def sync(self, conn: sa.Connection, *, force: bool = False) -> None:
        """Load added, changed and removed custom SearchParameters from the database."""
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return
        self._checked = now
        stamp = conn.execute(
            sa.select(sa.func.max(resource.c.last_updated), sa.func.count()).where(
                resource.c.res_type == "SearchParameter"
            )
        ).one()
        if not force and tuple(stamp) == self._seen:
            return
        rows = conn.execute(
            sa.select(resource.c.content, resource.c.version).where(
                resource.c.res_type == "SearchParameter", ~resource.c.deleted
            )
        ).all()
        wanted: dict[str, tuple[str, dict]] = {}
        for content, version in rows:
            if content.get("status") == "active" and content.get("url") not in self.builtin:
                wanted[content["url"]] = (str(version), content)
        with self._lock:
            for url in list(self.active):
                if url not in wanted:
                    self.engine.registry.remove(url)
                    del self.active[url]
            for url, (version, content) in wanted.items():
                if self.active.get(url) != version:
                    try:
                        self.engine.add_search_parameter(content)
                    except Exception:  # noqa: BLE001 - a bad stored one must not stop the others
                        continue
                    self.active[url] = version
            self._seen = tuple(stamp)
