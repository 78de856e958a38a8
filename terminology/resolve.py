"""Canonical resolution (FHIR R4 references.html#canonical): a CodeSystem, ValueSet or ConceptMap
by ``url`` or ``url|version``, from the resources stored on this server first, then from the R4
content shipped with Hearth. CodeSystems are compiled once per stored version (and once per
process for the built-in ones).

Stored resources are found through a ``find(res_type, query)`` callback (a search by ``url`` and
``version``) that the application supplies, so this package never touches storage itself. With a
``probe(res_type, query)`` callback too (the ``(id, version, last_updated)`` of the matches,
without content), stored content is kept per resource version and fetched (``_id`` search) only
when the probe shows a version not seen before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from terminology.builtin import Builtin
from terminology.builtin import default as default_builtin
from terminology.codesystem import CodeSystem
from terminology.errors import UnknownCanonical

Find = Callable[[str, Sequence[tuple[str, str]]], list[dict]]
Probe = Callable[[str, Sequence[tuple[str, str]]], Sequence[tuple[str, object, Any]]]
CACHE_SIZE = 256


def split_canonical(value: str, version: str | None = None) -> tuple[str, str | None]:
    """``url|version`` -> (url, version); an explicit ``version`` wins over the suffix."""
    url, sep, suffix = value.partition("|")
    return url, version or (suffix if sep and suffix else None)


def _newest(found: list[dict]) -> dict:
    """Several stored resources share the url: the most recently updated one."""
    return max(found, key=lambda r: (r.get("meta") or {}).get("lastUpdated") or "")


class Resolver:
    def __init__(
        self, find: Find | None = None, builtin: Builtin | None = None, probe: Probe | None = None
    ) -> None:
        self.find = find
        self.probe = probe
        self.builtin = builtin if builtin is not None else default_builtin()
        self._compiled: OrderedDict[tuple, CodeSystem] = OrderedDict()
        self._content: OrderedDict[tuple, dict] = OrderedDict()  # stored version -> content
        self._lock = threading.Lock()

    def resource(
        self,
        res_type: str,
        canonical: str,
        version: str | None = None,
        *,
        contained: Iterable[object] = (),
    ) -> dict | None:
        """The ``res_type`` with this canonical url (``url|version`` allowed), or None;
        ``contained``: resources of the referring resource, searched first."""
        url, version = split_canonical(canonical, version)
        for res in contained:
            if not isinstance(res, dict) or res.get("resourceType") != res_type:
                continue
            if url.startswith("#") and res.get("id") == url[1:]:
                return res  # a local reference to a contained resource
            if res.get("url") == url and (version is None or res.get("version") == version):
                return res
        query = [("url", url)] + ([("version", version)] if version else [])
        stored = self._stored(res_type, query)
        if stored is not None:
            return stored
        return self.builtin.get(res_type, url, version)

    def _stored(self, res_type: str, query: list[tuple[str, str]]) -> dict | None:
        """The newest stored resource matching ``query`` (a url search is exact)."""
        if self.find is None:
            return None
        if self.probe is None:
            found = self.find(res_type, query)
            return _newest(found) if found else None
        hits = self.probe(res_type, query)
        if not hits:
            return None
        res_id, version, updated = max(hits, key=lambda h: h[2])
        # the time too: a version written by a transaction that rolled back never matches
        key = (res_type, res_id, str(version), str(updated))
        with self._lock:
            cached = self._content.get(key)
            if cached is not None:
                self._content.move_to_end(key)
                return cached
        found = self.find(res_type, [("_id", res_id)])
        if not found:
            return None  # deleted since the probe
        content = found[0]
        with self._lock:
            self._content[key] = content
            while len(self._content) > CACHE_SIZE:
                self._content.popitem(last=False)
        return content

    def require(self, res_type: str, canonical: str, version: str | None = None) -> dict:
        found = self.resource(res_type, canonical, version)
        if found is None:
            url, version = split_canonical(canonical, version)
            named = f"{url}|{version}" if version else url
            raise UnknownCanonical(f"no {res_type} with the canonical URL {named} is known")
        return found

    def code_system(
        self, canonical: str, version: str | None = None, *, contained: Iterable[object] = ()
    ) -> CodeSystem | None:
        res = self.resource("CodeSystem", canonical, version, contained=contained)
        return None if res is None else self.compile(res)

    def require_code_system(self, canonical: str, version: str | None = None) -> CodeSystem:
        return self.compile(self.require("CodeSystem", canonical, version))

    def compile(self, resource: dict) -> CodeSystem:
        """The compiled form of a CodeSystem resource: once per stored version, once per
        process for a built-in one; a resource given inline (a POST body, a contained one) is
        compiled each time."""
        meta = resource.get("meta") or {}
        if self._is_builtin(resource):
            key: tuple = ("builtin", resource.get("url"))
        elif meta.get("versionId") is not None:
            key = ("stored", resource.get("id"), meta.get("versionId"), meta.get("lastUpdated"))
        else:
            return CodeSystem(resource)
        with self._lock:
            found = self._compiled.get(key)
            if found is not None:
                self._compiled.move_to_end(key)
                return found
        compiled = CodeSystem(resource)
        with self._lock:
            self._compiled[key] = compiled
            while len(self._compiled) > CACHE_SIZE:
                self._compiled.popitem(last=False)
        return compiled

    def _is_builtin(self, resource: dict) -> bool:
        url = resource.get("url")
        return isinstance(url, str) and self.builtin.get("CodeSystem", url) is resource
