"""One CodeSystem compiled for lookups: its concepts by code and its hierarchy (FHIR R4
codesystem.html#hierarchy, codesystem-operations.html $lookup / $subsumes).

The hierarchy comes from nested ``concept`` elements and from the ``parent`` / ``child``
properties (codesystem-concept-properties: a property whose code is ``parent``/``child`` or
whose declared uri is ``http://hl7.org/fhir/concept-properties#parent``/``#child``); a concept
may have several parents. A concept is inactive when its ``inactive`` property is true or its
``status`` property is ``retired`` or ``inactive``. Codes compare exactly unless the system says
``caseSensitive: false``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from resources.errors import Invalid

PROPERTY_URI = "http://hl7.org/fhir/concept-properties#"
SUBSUMES = "subsumes"
SUBSUMED_BY = "subsumed-by"
EQUIVALENT = "equivalent"
NOT_SUBSUMED = "not-subsumed"


@dataclass
class Concept:
    code: str
    display: str | None = None
    definition: str | None = None
    designations: list[dict] = field(default_factory=list)
    properties: list[dict] = field(default_factory=list)  # concept.property as given
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)

    def property_values(self, code: str) -> list[object]:
        """The values (``valueCode``, ``valueBoolean``, ...) of property ``code``."""
        out: list[object] = []
        for p in self.properties:
            if p.get("code") == code:
                out.extend(v for k, v in p.items() if k.startswith("value"))
        return out

    @property
    def inactive(self) -> bool:
        if True in self.property_values("inactive"):
            return True
        return any(v in ("retired", "inactive") for v in self.property_values("status"))

    @property
    def abstract(self) -> bool:
        return True in self.property_values("notSelectable")


class CodeSystem:
    """A CodeSystem resource indexed by code, with its hierarchy; built once per resource
    version (``compile``)."""

    def __init__(self, resource: dict) -> None:
        self.resource = resource
        self.url: str | None = resource.get("url")
        self.version: str | None = resource.get("version")
        self.name: str | None = resource.get("name") or resource.get("title")
        self.content: str = resource.get("content") or "complete"
        self.case_sensitive = resource.get("caseSensitive") is not False
        self.concepts: dict[str, Concept] = {}
        self._folded: dict[str, str] = {}
        declared = {p.get("code"): p.get("uri") for p in resource.get("property") or ()}
        self._parent_props = {c for c, u in declared.items() if u == PROPERTY_URI + "parent"}
        self._parent_props.add("parent")
        self._child_props = {c for c, u in declared.items() if u == PROPERTY_URI + "child"}
        self._child_props.add("child")
        self._add(resource.get("concept") or (), None)
        self._link()

    def _add(self, concepts: object, parent: str | None) -> None:
        if not isinstance(concepts, list):
            return
        for c in concepts:
            code = c.get("code") if isinstance(c, dict) else None
            if not isinstance(code, str) or not code:
                continue
            concept = self.concepts.get(code)
            if concept is None:
                concept = self.concepts[code] = Concept(
                    code,
                    c.get("display"),
                    c.get("definition"),
                    list(c.get("designation") or ()),
                    list(c.get("property") or ()),
                )
                self._folded.setdefault(code.lower(), code)
            if parent is not None and parent not in concept.parents:
                concept.parents.append(parent)
            self._add(c.get("concept"), code)

    def _link(self) -> None:
        for concept in self.concepts.values():
            for p in concept.properties:
                value = p.get("valueCode") or p.get("valueString")
                if not isinstance(value, str) or value not in self.concepts:
                    continue
                if p.get("code") in self._parent_props and value not in concept.parents:
                    concept.parents.append(value)
                elif p.get("code") in self._child_props:
                    child = self.concepts[value]
                    if concept.code not in child.parents:
                        child.parents.append(concept.code)
        for concept in self.concepts.values():
            for parent in concept.parents:
                if parent in self.concepts:
                    siblings = self.concepts[parent].children
                    if concept.code not in siblings:
                        siblings.append(concept.code)

    # -- lookups ---------------------------------------------------------------------------
    def get(self, code: str) -> Concept | None:
        found = self.concepts.get(code)
        if found is None and not self.case_sensitive:
            exact = self._folded.get(code.lower())
            found = self.concepts.get(exact) if exact else None
        return found

    def require(self, code: str) -> Concept:
        found = self.get(code)
        if found is None:
            raise Invalid(f"code {code!r} is not defined in the code system {self.url}")
        return found

    @property
    def has_hierarchy(self) -> bool:
        return any(c.parents for c in self.concepts.values())

    def __iter__(self) -> Iterator[Concept]:
        return iter(self.concepts.values())

    def __len__(self) -> int:
        return len(self.concepts)

    def descendants(self, code: str) -> list[str]:
        """The codes below ``code`` (transitively, each once, parents before children), without
        ``code`` itself."""
        return self._walk(code, lambda c: c.children)

    def ancestors(self, code: str) -> list[str]:
        """The codes above ``code`` (transitively), without ``code`` itself."""
        return self._walk(code, lambda c: c.parents)

    def _walk(self, code: str, step) -> list[str]:  # type: ignore[no-untyped-def]
        start = self.require(code).code
        seen = {start}
        out: list[str] = []
        frontier = [start]
        while frontier:
            nxt = []
            for c in frontier:
                for other in step(self.concepts[c]):
                    if other not in seen and other in self.concepts:
                        seen.add(other)
                        out.append(other)
                        nxt.append(other)
            frontier = nxt
        return out

    def subsumes(self, code_a: str, code_b: str) -> str:
        """$subsumes outcome of A against B: ``equivalent``, ``subsumes`` (A is an ancestor of
        B), ``subsumed-by`` (A is a descendant of B) or ``not-subsumed``."""
        a, b = self.require(code_a).code, self.require(code_b).code
        if a == b:
            return EQUIVALENT
        if a in self.ancestors(b):
            return SUBSUMES
        if b in self.ancestors(a):
            return SUBSUMED_BY
        return NOT_SUBSUMED
