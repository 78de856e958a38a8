"""ValueSet expansion (FHIR R4 valueset.html#compositions, valueset-operations.html#expand).

``compose.include`` / ``compose.exclude`` entries select from a code system (all of it, listed
``concept``s, or ``filter``s: ``is-a``, ``descendent-of``, ``is-not-a``, ``generalizes``,
``regex``, ``=``, ``in``, ``not-in``, ``exists``) and/or import other value sets
(``valueSet``); the parts of one entry intersect, the entries of ``include`` unite, ``exclude``
is subtracted. A value set without ``compose`` (or whose compose cannot be expanded here) but with an
``expansion`` is read from that expansion.
Code systems are resolved by canonical URL (``Resolver``), the value set's contained ones first.

Expansion parameters: ``filter`` (text: every word of it starts a word of the display, or the
code starts with it, ignoring case), ``activeOnly``, ``count`` / ``offset`` (paging of
``contains``), ``includeDesignations``, ``includeDefinition``. An expansion larger than
``max_size`` raises ``TooCostly``; a code system this server does not hold, or a filter it cannot
evaluate, raises ``NotExpandable``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime

from resources.errors import Invalid
from terminology.codesystem import CodeSystem
from terminology.errors import NotExpandable, TooCostly
from terminology.resolve import Resolver

HIERARCHY_OPS = frozenset({"is-a", "descendent-of", "is-not-a", "generalizes"})
MAX_DEPTH = 16  # nested valueSet imports


@dataclass
class Entry:
    system: str
    code: str
    display: str | None = None
    version: str | None = None
    inactive: bool = False
    abstract: bool = False
    definition: str | None = None
    designations: list[dict] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.system, self.code)

    def to_fhir(self, *, designations: bool = False, definition: bool = False) -> dict:
        out: dict = {"system": self.system}
        if self.version:
            out["version"] = self.version
        if self.abstract:
            out["abstract"] = True
        if self.inactive:
            out["inactive"] = True
        out["code"] = self.code
        if self.display:
            out["display"] = self.display
        if designations and self.designations:
            out["designation"] = self.designations
        if definition and self.definition:
            out["extension"] = [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/valueset-concept-definition",
                    "valueString": self.definition,
                }
            ]
        return out


@dataclass(frozen=True)
class ExpandParams:
    filter: str | None = None
    count: int | None = None
    offset: int = 0
    active_only: bool = False
    include_designations: bool = False
    include_definition: bool = False


Codes = dict[tuple[str, str], Entry]


class Expander:
    """Expands value sets against one resolver, refusing expansions over ``max_size`` codes."""

    def __init__(self, resolver: Resolver, max_size: int) -> None:
        self.resolver = resolver
        self.max_size = max_size

    # -- the whole value set ---------------------------------------------------------------
    def codes(self, value_set: dict, _stack: tuple[str, ...] = ()) -> Codes:
        """Every code of ``value_set``, in definition order, each once."""
        name = value_set.get("url") or value_set.get("id") or "(inline)"
        if name in _stack:
            raise NotExpandable(f"value set {name} imports itself (via {' -> '.join(_stack)})")
        if len(_stack) >= MAX_DEPTH:
            raise NotExpandable(f"value set imports nest deeper than {MAX_DEPTH} levels")
        stack = (*_stack, name)
        compose = value_set.get("compose")
        if not isinstance(compose, dict):
            if isinstance(value_set.get("expansion"), dict):
                return self._from_expansion(value_set["expansion"])
            raise NotExpandable(f"value set {name} has neither compose nor expansion")
        try:
            return self._compose(value_set, compose, name, stack)
        except NotExpandable:
            if isinstance(value_set.get("expansion"), dict):
                return self._from_expansion(value_set["expansion"])  # the one it carries
            raise

    def _compose(self, value_set: dict, compose: dict, name: str, stack: tuple[str, ...]) -> Codes:
        contained = value_set.get("contained") or ()
        out: Codes = {}
        for inc in compose.get("include") or ():
            for key, entry in self._part(inc, contained, stack).items():
                out.setdefault(key, entry)
            self._check_size(out, name)
        for exc in compose.get("exclude") or ():
            for key in self._part(exc, contained, stack):
                out.pop(key, None)
        if compose.get("inactive") is False:
            out = {k: e for k, e in out.items() if not e.inactive}
        return out

    def _check_size(self, codes: Sized, name: str) -> None:
        if len(codes) > self.max_size:
            raise TooCostly(
                f"the expansion of {name} has more than {self.max_size} codes "
                "(the server's HEARTH_MAX_EXPANSION_SIZE); narrow it with a filter"
            )

    def _from_expansion(self, expansion: dict) -> Codes:
        out: Codes = {}

        def walk(items: object) -> None:
            for c in items if isinstance(items, list) else ():
                if isinstance(c, dict) and c.get("system") and c.get("code"):
                    e = Entry(
                        c["system"],
                        c["code"],
                        c.get("display"),
                        c.get("version"),
                        bool(c.get("inactive")),
                        bool(c.get("abstract")),
                        designations=list(c.get("designation") or ()),
                    )
                    out.setdefault(e.key, e)
                if isinstance(c, dict):
                    walk(c.get("contains"))

        walk(expansion.get("contains"))
        self._check_size(out, "the stored expansion")
        return out

    # -- one include / exclude entry -------------------------------------------------------
    def _part(self, inc: dict, contained: Sequence[object], stack: tuple[str, ...]) -> Codes:
        sets: list[Codes] = []
        system = inc.get("system")
        if isinstance(system, str) and system:
            sets.append(self._from_system(inc, system, contained))
        for vs_url in inc.get("valueSet") or ():
            vs = self.resolver.resource("ValueSet", vs_url, contained=contained)
            if vs is None:
                raise NotExpandable(f"value set {stack[-1]} imports {vs_url}, which is not known")
            sets.append(self.codes(vs, stack))
        if not sets:
            raise Invalid(f"value set {stack[-1]}: an include/exclude names no system or valueSet")
        first, rest = sets[0], sets[1:]
        return {k: e for k, e in first.items() if all(k in s for s in rest)}

    def _from_system(self, inc: dict, system: str, contained: Sequence[object]) -> Codes:
        version = inc.get("version")
        cs = self.resolver.code_system(system, version, contained=contained)
        if system.startswith("#") and cs is not None and cs.url:
            system = cs.url  # "#id": a contained code system, named by its own url
        concepts = inc.get("concept") or ()
        filters = inc.get("filter") or ()
        if concepts:
            out: Codes = {}
            for c in concepts:
                code = c.get("code") if isinstance(c, dict) else None
                if not isinstance(code, str):
                    continue
                found = cs.get(code) if cs is not None else None
                if found is None and cs is not None and cs.content == "complete":
                    continue  # not a code of the system: not in the value set
                e = _entry(cs, system, found.code if found else code, found)
                if c.get("display"):
                    e.display = c["display"]
                if c.get("designation"):
                    e.designations = list(c["designation"])
                out.setdefault(e.key, e)
            return out
        if cs is None or cs.content in ("not-present", "supplement"):
            named = f"{system}|{version}" if version else system
            raise NotExpandable(
                f"the code system {named} is not held by this server"
                + (f" (its content is {cs.content})" if cs is not None else "")
                + ", so a value set drawing on all or part of it cannot be expanded"
            )
        codes: list[str] | None = None
        for f in filters:
            selected = filter_codes(cs, f)
            codes = (
                [c for c in codes if c in selected]
                if codes is not None
                else [c.code for c in cs if c.code in selected]
            )
        if codes is None:
            codes = [c.code for c in cs]
        self._check_size(codes, system)
        return {(system, c): _entry(cs, system, c, cs.concepts[c]) for c in codes}

    # -- parameters ------------------------------------------------------------------------
    def expand(self, value_set: dict, params: ExpandParams) -> dict:
        """The ValueSet with its ``expansion`` (valueset-operations.html#expand)."""
        entries = list(self.codes(value_set).values())
        if params.active_only:
            entries = [e for e in entries if not e.inactive]
        if params.filter:
            entries = [e for e in entries if text_matches(e, params.filter)]
        total = len(entries)
        page = entries[params.offset :]
        if params.count is not None:
            page = page[: params.count]
        used: list[dict] = []
        if params.filter:
            used.append({"name": "filter", "valueString": params.filter})
        if params.active_only:
            used.append({"name": "activeOnly", "valueBoolean": True})
        if params.count is not None:
            used.append({"name": "count", "valueInteger": params.count})
        if params.offset:
            used.append({"name": "offset", "valueInteger": params.offset})
        expansion: dict = {
            "identifier": f"urn:uuid:{uuid.uuid4()}",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "total": total,
        }
        if params.offset or params.count is not None:
            expansion["offset"] = params.offset
        if used:
            expansion["parameter"] = used
        expansion["contains"] = [
            e.to_fhir(
                designations=params.include_designations, definition=params.include_definition
            )
            for e in page
        ]
        if not expansion["contains"]:
            del expansion["contains"]
        out = {k: v for k, v in value_set.items() if k not in ("expansion", "text")}
        out["expansion"] = expansion
        return out


def _entry(cs: CodeSystem | None, system: str, code: str, concept) -> Entry:  # type: ignore[no-untyped-def]
    if concept is None:
        return Entry(system, code, version=cs.version if cs else None)
    return Entry(
        system,
        code,
        concept.display,
        cs.version if cs else None,
        concept.inactive,
        concept.abstract,
        concept.definition,
        list(concept.designations),
    )


def text_matches(entry: Entry, text: str) -> bool:
    """``filter`` of $expand: the code starts with the text, or every word of the text starts a
    word of the display (case-insensitive)."""
    t = text.strip().lower()
    if not t or entry.code.lower().startswith(t):
        return True
    words = re.findall(r"\w+", (entry.display or "").lower())
    return all(any(w.startswith(q) for w in words) for q in re.findall(r"\w+", t))


# -- filters (codesystem.html#filters, valueset compose.include.filter) ------------------------
def filter_codes(cs: CodeSystem, f: dict) -> set[str]:
    prop, op, value = f.get("property"), f.get("op"), f.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise Invalid("a compose filter needs property, op and value")
    if op in HIERARCHY_OPS:
        if prop not in ("concept", "code", "parent", "child"):
            raise NotExpandable(f"filter {prop} {op}: hierarchy filters apply to 'concept'")
        concept = cs.get(value)
        if concept is None:
            return {c.code for c in cs} if op == "is-not-a" else set()
        if op == "generalizes":
            return {concept.code, *cs.ancestors(concept.code)}
        below = set(cs.descendants(concept.code))
        if op == "descendent-of":
            return below
        below.add(concept.code)
        if op == "is-a":
            return below
        return {c.code for c in cs} - below
    if op != "exists":
        _check_property(cs, prop)
    if op == "regex":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise Invalid(
                f"filter regex {value!r} is not a valid regular expression: {exc}"
            ) from exc
        return {c.code for c in cs if any(pattern.fullmatch(v) for v in _values(cs, c, prop))}
    if op in ("=", "in", "not-in"):
        wanted = {value} if op == "=" else {v.strip() for v in value.split(",")}
        hit = {c.code for c in cs if wanted & set(_values(cs, c, prop))}
        return hit if op != "not-in" else {c.code for c in cs} - hit
    if op == "exists":
        if value not in ("true", "false"):
            raise Invalid(f"filter {prop} exists takes true or false, not {value!r}")
        has = {c.code for c in cs if _values(cs, c, prop)}
        return has if value == "true" else {c.code for c in cs} - has
    raise NotExpandable(f"filter operator {op!r} is not supported")


def _values(cs: CodeSystem, concept, prop: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The values of ``prop`` on ``concept`` as strings (codes of Codings, 'true'/'false')."""
    if prop in ("concept", "code"):
        return [concept.code]
    if prop == "display":
        return [concept.display] if concept.display else []
    if prop == "parent":
        return list(concept.parents)
    if prop == "child":
        return list(concept.children)
    out = []
    for v in concept.property_values(prop):
        if isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, dict):
            if isinstance(v.get("code"), str):
                out.append(v["code"])
        else:
            out.append(str(v))
    return out


def _check_property(cs: CodeSystem, prop: str) -> None:
    if prop in ("concept", "code", "display", "parent", "child", "inactive", "status"):
        return
    if prop in {p.get("code") for p in cs.resource.get("property") or ()}:
        return
    if any(p.get("code") == prop for c in cs for p in c.properties):
        return
    raise NotExpandable(
        f"the code system {cs.url} has no property {prop!r}, so a filter on it cannot be "
        "evaluated here"
    )
