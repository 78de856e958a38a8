"""Search parameter definitions: the R4 SearchParameter resources, and custom ones added at run
time (FHIR R4 searchparameter.html, search.html#custom).

The official 1,375 definitions ship in ``data/search-parameters.json.gz``. A
``SearchParameterRegistry`` is built once (``SearchParameterRegistry.load_default()``, never at
import time) and maps (resource type, code) to a ``SearchParam``; parameters whose base is
``Resource`` or ``DomainResource`` (``_id``, ``_tag``, ``_profile`` ...) apply to every type that
inherits from that base.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources as importlib_resources

import orjson

from resources.errors import Invalid

PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)

# Resource types that are not DomainResources (R4 resourcelist.html).
NOT_DOMAIN_RESOURCES = frozenset({"Bundle", "Binary", "Parameters"})


@dataclass(frozen=True)
class Component:
    """One component of a composite parameter: the component definition's url and the
    expression, relative to the composite's own expression."""

    definition: str
    expression: str


@dataclass(frozen=True)
class SearchParam:
    """What the indexer and the compiler need from one SearchParameter."""

    url: str
    code: str
    type: str
    base: tuple[str, ...]
    expression: str | None
    target: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    id: str | None = None
    resource: dict | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def from_resource(cls, sp: dict) -> SearchParam:
        """Build from a SearchParameter resource; raises ``Invalid`` if it is not usable."""
        if not isinstance(sp, dict) or sp.get("resourceType") != "SearchParameter":
            raise Invalid("not a SearchParameter resource")
        code, typ, base = sp.get("code"), sp.get("type"), sp.get("base")
        if not isinstance(code, str) or not code:
            raise Invalid("SearchParameter.code is required", expression=["SearchParameter.code"])
        if typ not in PARAM_TYPES:
            raise Invalid(
                f"SearchParameter.type {typ!r} is not a search parameter type",
                expression=["SearchParameter.type"],
            )
        if not isinstance(base, list) or not base or not all(isinstance(b, str) for b in base):
            raise Invalid("SearchParameter.base is required", expression=["SearchParameter.base"])
        expression = sp.get("expression")
        if expression is not None and not isinstance(expression, str):
            raise Invalid("SearchParameter.expression must be a string")
        components = []
        for i, comp in enumerate(sp.get("component") or []):
            if not isinstance(comp, dict) or not isinstance(comp.get("expression"), str):
                raise Invalid(
                    "a composite component needs an expression",
                    expression=[f"SearchParameter.component[{i}]"],
                )
            components.append(Component(str(comp.get("definition", "")), comp["expression"]))
        if typ == "composite" and len(components) < 2:
            raise Invalid("a composite SearchParameter needs at least two components")
        url = sp.get("url") or f"urn:hearth:searchparameter:{'-'.join(base)}-{code}"
        return cls(
            url=url,
            code=code,
            type=typ,
            base=tuple(base),
            expression=expression,
            target=tuple(sp.get("target") or ()),
            components=tuple(components),
            id=sp.get("id"),
            resource=sp,
        )


class SearchParameterRegistry:
    """(resource type, code) → ``SearchParam``. Thread-safe for concurrent reads and ``add``."""

    def __init__(self, params: Iterable[SearchParam] = ()) -> None:
        self._lock = threading.Lock()
        self._by_base: dict[str, dict[str, SearchParam]] = {}
        self._by_url: dict[str, SearchParam] = {}
        self._merged: dict[str, dict[str, SearchParam]] = {}
        self._types: list[str] | None = None
        self._type_names: frozenset[str] | None = None
        self.generation = 0  # bumped on every change, so caches keyed on it can be dropped
        for p in params:
            self._put(p)

    @classmethod
    def load_default(cls) -> SearchParameterRegistry:
        """The official R4 definitions (read from the package data, ~50 ms)."""
        ref = importlib_resources.files("resources.search") / "data" / "search-parameters.json.gz"
        bundle = orjson.loads(gzip.decompress(ref.read_bytes()))
        return cls(SearchParam.from_resource(e["resource"]) for e in bundle["entry"])

    # -- changes -----------------------------------------------------------------------------
    def add(self, sp: dict | SearchParam) -> SearchParam:
        """Register a custom SearchParameter (a resource dict); it replaces one with the same url
        or the same (base, code). Resources indexed before need re-indexing to be found by it."""
        param = sp if isinstance(sp, SearchParam) else SearchParam.from_resource(sp)
        if param.type != "special" and param.code not in ("_text", "_content", "_query"):
            if not param.expression:
                raise Invalid(
                    f"SearchParameter {param.code!r} has no expression, so it cannot be indexed",
                    expression=["SearchParameter.expression"],
                )
            _check_expression(param.expression)
            for comp in param.components:
                _check_expression(comp.expression)
        with self._lock:
            self._put(param)
        return param

    def remove(self, url: str) -> None:
        """Forget the parameter with this canonical url (a deleted or retired custom one)."""
        with self._lock:
            old = self._by_url.pop(url, None)
            if old is None:
                return
            for b in old.base:
                if self._by_base.get(b, {}).get(old.code) is old:
                    del self._by_base[b][old.code]
            self._merged = {}
            self.generation += 1

    def _put(self, param: SearchParam) -> None:
        old = self._by_url.get(param.url)
        if old is not None:
            for b in old.base:
                if self._by_base.get(b, {}).get(old.code) is old:
                    del self._by_base[b][old.code]
        for b in param.base:
            self._by_base.setdefault(b, {})[param.code] = param
        self._by_url[param.url] = param
        self._merged = {}
        self._types = None
        self._type_names = None
        self.generation += 1

    # -- lookups -----------------------------------------------------------------------------
    def get(self, res_type: str, code: str) -> SearchParam | None:
        return self.for_type(res_type).get(code)

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    def for_type(self, res_type: str) -> dict[str, SearchParam]:
        """All parameters that apply to ``res_type``: its own, DomainResource's, Resource's."""
        merged = self._merged.get(res_type)
        if merged is None:
            merged = dict(self._by_base.get("Resource", {}))
            if res_type not in NOT_DOMAIN_RESOURCES:
                merged.update(self._by_base.get("DomainResource", {}))
            merged.update(self._by_base.get(res_type, {}))
            self._merged[res_type] = merged
        return merged

    def resource_types(self) -> list[str]:
        """The R4 resource types (from fhirpathpy's R4 model) and any other type named as the
        base of a registered parameter, sorted."""
        cached = self._types
        if cached is None:
            names = set(r4_resource_types())
            names.update(b for b in self._by_base if b not in ("Resource", "DomainResource"))
            cached = self._types = sorted(names)
        return cached

    def is_resource_type(self, name: str) -> bool:
        return name in self._type_set()

    def _type_set(self) -> frozenset[str]:
        cached = self._type_names
        if cached is None:
            cached = self._type_names = frozenset(self.resource_types())
        return cached

    def __iter__(self) -> Iterator[SearchParam]:
        return iter(list(self._by_url.values()))

    def __len__(self) -> int:
        return len(self._by_url)


def r4_resource_types() -> list[str]:
    """The 146 R4 resource types."""
    from fhirpathpy.models import models

    parents = models["r4"]["type2Parent"]
    return sorted(
        k
        for k, v in parents.items()
        if v in ("DomainResource", "Resource") and k not in ("DomainResource", "Resource")
    )


def check_expression(expression: str) -> None:
    """Raise ``Invalid`` unless ``expression`` is valid FHIRPath syntax."""
    _check_expression(expression)


def _check_expression(expression: str) -> None:
    """Reject an expression that is not valid FHIRPath syntax (fhirpathpy's own parser recovers
    from syntax errors silently, so run its grammar with a listener that does not)."""
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class _Raise(ErrorListener):
        def syntaxError(self, recognizer, offending, line, column, msg, e):  # type: ignore[no-untyped-def]  # noqa: N802
            raise Invalid(
                f"SearchParameter.expression {expression!r} is not valid FHIRPath: "
                f"column {column}: {msg}",
                expression=["SearchParameter.expression"],
            )

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    parser.entireExpression()  # expression EOF: trailing garbage is an error too
