"""The FHIR R4 JSON Schema, prepared for judging one resource (spec: json.html#schema): the
data the checks of :mod:`resources.validation` consult (element tables, compiled per-type
validators), loaded once per process by :func:`schema`; it checks nothing itself.

``data/fhir.schema.json.gz`` is the published R4 (4.0.1) schema as redistributed by Medplum, who
added resource types and elements of their own (see ``data/README.md``). :class:`R4Schema` turns
it into the R4 schema Hearth judges by; every change is tied to the spec:

* Resource types: only the 146 concrete R4 types (``data/r4-resource-types.txt``, the codes of
  CodeSystem ``http://hl7.org/fhir/resource-types`` 4.0.1); the redistributor's types are dropped.
* :data:`NON_R4_ELEMENTS`: elements the redistributor added to R4 definitions; removed.
* Canonical-typed elements get their ``_name`` companion: json.html §"Representing primitive
  elements" allows one for every primitive, the published schema forgets it for ``canonical``.
* ``base64Binary`` gets the pattern the schema gives it inline (its named definition has none).
* The patterns are XML Schema regexes (datatypes.html), in which ``\\s`` is only space, tab, CR and
  LF; :data:`XSD_PATTERNS` gives each the equivalent Python regex (linear-time where the published
  form backtracks: base64Binary).
* JSON Schema applies ``pattern`` to strings only; the numeric primitives get the numeric limits
  their patterns and datatypes.html state (integer is 32-bit, positiveInt ≥ 1, unsignedInt ≥ 0).
* Left to :mod:`resources.validation.structure`, which reports every case where the schema
  reports one per object: unknown elements (no ``additionalProperties``), ``null`` (allowed by
  json.html inside a primitive array aligned with its ``_name`` array, so the schema lets it
  pass everywhere a primitive goes), and nested resources (``ResourceList`` accepts any object;
  each nested resource is checked with its own type's validator).

Each type's validator is compiled by fastjsonschema on first use from only the definitions that
type reaches (≈ 60–70 of 680; 0.1–0.3 s each), then cached for the life of the process.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from time import perf_counter
from typing import Any

import fastjsonschema
import orjson

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent.parent / "data"
SCHEMA_FILE = DATA / "fhir.schema.json.gz"
RESOURCE_TYPES_FILE = DATA / "r4-resource-types.txt"

# Elements the redistributor added to R4 definitions (none is in the R4 StructureDefinitions).
NON_R4_ELEMENTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("Meta", "project"),
        ("Meta", "author"),
        ("Meta", "account"),
        ("Meta", "compartment"),
        ("Reference", "resource"),
        ("OperationOutcome", "status"),
        ("OperationOutcome", "resource"),
        ("ObservationDefinition", "publisher"),
        ("DeviceDefinition", "classification"),
    }
)

_WS = r"[ \t\n\r]"  # XML Schema \s
_NON_WS = r"[^ \t\n\r]"  # XML Schema \S
# Published pattern -> the same language as a Python regex (XML Schema semantics of \s and \S).
XSD_PATTERNS: dict[str, str] = {
    r"^[ \r\n\t\S]+$": r"^[\s\S]+$",  # string, markdown: any character (space, CR, LF, tab or not)
    r"^\S*$": rf"^{_NON_WS}*$",  # uri, url, canonical
    r"^[^\s]+(\s[^\s]+)*$": rf"^{_NON_WS}+({_WS}{_NON_WS}+)*$",  # code
    r"^(\s*([0-9a-zA-Z\+/=]){4}\s*)+$": rf"^{_WS}*([0-9a-zA-Z+/=]{{4}}{_WS}*)+$",  # base64Binary
}
# Numeric primitives: the range their pattern and datatypes.html state.
INTEGER_LIMITS: dict[str, tuple[int, int]] = {
    "integer": (-(2**31), 2**31 - 1),
    "positiveInt": (1, 2**31 - 1),
    "unsignedInt": (0, 2**31 - 1),
}


@dataclass(frozen=True, slots=True)
class ElementSpec:
    """One element of a definition: its R4 type, and whether it repeats.

    ``type`` is a primitive (``date``), a complex or backbone definition (``HumanName``,
    ``Observation_Component``) or ``Resource`` (a nested resource: contained, Bundle.entry.resource).
    """

    type: str
    array: bool
    primitive: bool


class R4Schema:
    """The prepared R4 JSON Schema: element tables, and lazily compiled per-type validators."""

    def __init__(self, raw: dict, resource_types: Sequence[str]) -> None:
        mapped = raw["discriminator"]["mapping"]
        missing = [t for t in resource_types if t not in mapped]
        if missing:
            raise ValueError(f"R4 resource types missing from the JSON Schema: {missing}")
        self.resource_types = frozenset(resource_types)
        raw_defs = raw["definitions"]
        self._primitives = frozenset(
            n for n, d in raw_defs.items() if "properties" not in d and n != "ResourceList"
        )
        self._by_lexical = {
            (raw_defs[p].get("type"), raw_defs[p].get("pattern")): p
            for p in sorted(self._primitives)
        }
        self._inline_patterns = self._patterns_used_inline(raw_defs)
        self._specs: dict[str, dict[str, ElementSpec]] = {}
        self._definitions = self._prepare(raw_defs)
        self._lock = threading.Lock()
        self._validators: dict[str, Callable[[Any], Any]] = {}
        self.compile_seconds: dict[str, float] = {}

    # -- preparation ---------------------------------------------------------------------------

    def _prepare(self, raw_defs: dict) -> dict[str, dict]:
        """Every definition reachable from an R4 resource type, rewritten as the module says."""
        out: dict[str, dict] = {"ResourceList": {"type": "object"}}
        pending = list(self.resource_types)
        while pending:
            name = pending.pop()
            if name in out:
                continue
            prepared = self._prepare_definition(name, raw_defs[name])
            out[name] = prepared
            pending.extend(_refs(prepared))
        return out

    def _prepare_definition(self, name: str, raw: dict) -> dict:
        if "properties" not in raw:
            return self._primitive(name, raw)
        props: dict[str, dict] = {}
        specs: dict[str, ElementSpec] = {}
        for key, prop in raw["properties"].items():
            if (name, key) in NON_R4_ELEMENTS or (name, key.lstrip("_")) in NON_R4_ELEMENTS:
                continue
            props[key] = self._property(key, prop)
            specs[key] = self._spec(key, prop)
        for key, spec in list(specs.items()):
            companion = "_" + key
            if spec.type == "canonical" and companion not in props:
                element = {"$ref": "#/definitions/Element"}
                props[companion] = {"type": "array", "items": element} if spec.array else element
                specs[companion] = ElementSpec("Element", spec.array, primitive=False)
        prepared: dict[str, Any] = {"properties": props}
        required = [k for k in raw.get("required", ()) if k in props]
        if required:
            prepared["required"] = required
        self._specs[name] = specs
        return prepared

    def _property(self, key: str, prop: dict) -> dict:
        if prop.get("type") == "array":
            return {"type": "array", "items": self._property(key, prop["items"])}
        if "$ref" in prop:
            return {"$ref": prop["$ref"]}
        if "const" in prop:
            return {"const": prop["const"]}
        if "enum" in prop:
            return {"enum": [*prop["enum"], None]}
        return self._primitive(self._inline_primitive(key, prop), prop)

    def _patterns_used_inline(self, raw_defs: dict) -> dict[str, str]:
        """The pattern each primitive has where the schema writes it inline (choice elements).

        The named definition of base64Binary lacks the pattern its inline uses carry."""
        found: dict[str, str] = {}
        for definition in raw_defs.values():
            for key, prop in definition.get("properties", {}).items():
                if "pattern" in prop and "$ref" not in prop:
                    found.setdefault(self._inline_primitive(key, prop), prop["pattern"])
        return found

    def _primitive(self, name: str, raw: dict) -> dict:
        if name in INTEGER_LIMITS:
            low, high = INTEGER_LIMITS[name]
            return {"type": ["integer", "null"], "minimum": low, "maximum": high}
        kind = raw.get("type", "string")  # xhtml has no type in the schema: it is a JSON string
        out: dict[str, Any] = {"type": [kind, "null"]}
        pattern = raw.get("pattern") or self._inline_patterns.get(name)
        if kind == "string" and pattern:
            out["pattern"] = XSD_PATTERNS.get(pattern, pattern)
            if "\\s" in pattern.lower() and pattern not in XSD_PATTERNS:
                raise ValueError(f"no XML Schema translation for pattern {pattern!r}")
        return out

    def _spec(self, key: str, prop: dict) -> ElementSpec:
        array = prop.get("type") == "array"
        item = prop["items"] if array else prop
        if "$ref" in item:
            target = item["$ref"].rsplit("/", 1)[1]
            if target == "ResourceList":
                return ElementSpec("Resource", array, primitive=False)
            return ElementSpec(target, array, primitive=target in self._primitives)
        if "enum" in item or "const" in item:
            return ElementSpec("code", array, primitive=True)
        return ElementSpec(self._inline_primitive(key, item), array, primitive=True)

    def _inline_primitive(self, key: str, prop: dict) -> str:
        """The primitive an inline property (a choice element such as valueDate) has."""
        suffixes = [p for p in self._primitives if key.endswith(p[0].upper() + p[1:])]
        if suffixes:
            return max(suffixes, key=len)
        return self._by_lexical.get((prop.get("type"), prop.get("pattern")), "string")

    # -- element tables --------------------------------------------------------------------------

    def elements(self, definition: str) -> dict[str, ElementSpec]:
        """The elements of a complex definition, by JSON property name (``{}`` for others)."""
        return self._specs.get(definition, {})

    def required(self, definition: str) -> tuple[str, ...]:
        """The elements the schema marks required in a definition (complex-typed ones only: the
        schema cannot require a primitive, whose value may sit in its ``_name`` companion)."""
        return tuple(self._definitions.get(definition, {}).get("required", ()))

    def is_type_name(self, name: str) -> bool:
        """Whether ``name`` (as spelled in a choice element: ``DateTime``) is an R4 data type."""
        return name[:1].lower() + name[1:] in self._primitives or (
            name in self._definitions and "_" not in name
        )

    def steps(self, root: str, resource: Any, path: Sequence[str | int]) -> Iterator[Step]:
        """Follow ``path`` inside ``resource`` (of type ``root``), yielding each element passed.

        Stops after an element R4 does not define (its ``spec`` is None). A nested resource is
        followed with the definition of its own ``resourceType``.
        """
        for step, _, _ in self._follow(root, resource, path):
            if step is not None:
                yield step

    def target(self, root: str, resource: Any, path: Sequence[str | int]) -> tuple[str, Any] | None:
        """The definition and the data of the object at ``path`` (None where the path leaves R4)."""
        landing: tuple[str, Any] = (root, resource)
        for step, definition, node in self._follow(root, resource, path):
            if step is not None and step.spec is None:
                return None
            landing = (definition, node)
        return landing

    def _follow(
        self, root: str, resource: Any, path: Sequence[str | int]
    ) -> Iterator[tuple[Step | None, str, Any]]:
        """Each step of ``path`` (None for an array index), with the definition and data reached."""
        definition, node = root, resource
        for key in path:
            if isinstance(key, int):
                node = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
                if definition == "Resource":
                    definition = self._type_of(node)
                yield None, definition, node
                continue
            spec = self.elements(definition).get(key)
            step = Step(definition, key, spec)
            if spec is None:
                yield step, definition, None
                return
            node = node.get(key) if isinstance(node, dict) else None
            definition = spec.type
            if definition == "Resource" and not spec.array:
                definition = self._type_of(node)
            yield step, definition, node

    def _type_of(self, node: Any) -> str:
        """The definition of a nested resource: its own type, or ``Resource`` (no elements)."""
        kind = node.get("resourceType") if isinstance(node, dict) else None
        return kind if isinstance(kind, str) and kind in self.resource_types else "Resource"

    # -- validation ------------------------------------------------------------------------------

    def validator(self, type_name: str) -> Callable[[Any], Any]:
        """The compiled validator for one resource type (compiled once, on first use)."""
        found = self._validators.get(type_name)
        if found is not None:
            return found
        with self._lock:
            found = self._validators.get(type_name)
            if found is None:
                found = self._compile(type_name)
                self._validators[type_name] = found
        return found

    def _compile(self, type_name: str) -> Callable[[Any], Any]:
        reached: set[str] = set()
        pending = [type_name]
        while pending:
            name = pending.pop()
            if name not in reached:
                reached.add(name)
                pending.extend(_refs(self._definitions[name]))
        schema = {
            "$schema": "http://json-schema.org/draft-06/schema#",
            "$ref": f"#/definitions/{type_name}",
            "definitions": {name: self._definitions[name] for name in sorted(reached)},
        }
        started = perf_counter()
        compiled = fastjsonschema.compile(schema, use_formats=False, fast_fail=False)
        self.compile_seconds[type_name] = elapsed = perf_counter() - started
        log.debug(
            "compiled the R4 JSON Schema of %s (%d definitions) in %.0f ms",
            type_name,
            len(reached),
            elapsed * 1000,
        )
        return compiled


@dataclass(frozen=True, slots=True)
class Step:
    """One element passed while following a path: the definition it belongs to, its name, and
    its R4 spec (None when R4 does not define it)."""

    definition: str
    key: str
    spec: ElementSpec | None


def expression(root: str, path: Sequence[str | int]) -> str:
    """A FHIRPath-style location: ``Observation.component[0].code``."""
    parts = [root]
    for key in path:
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(parts)


def _refs(definition: Any) -> Iterator[str]:
    if isinstance(definition, dict):
        ref = definition.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[1]
        for value in definition.values():
            if isinstance(value, dict | list):
                yield from _refs(value)
    elif isinstance(definition, list):
        for value in definition:
            yield from _refs(value)


def _load_resource_types() -> list[str]:
    lines = RESOURCE_TYPES_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@lru_cache(maxsize=1)
def r4_resource_types() -> frozenset[str]:
    """The 146 concrete FHIR R4 resource types (cheap: no schema load)."""
    return frozenset(_load_resource_types())


@lru_cache(maxsize=1)
def schema() -> R4Schema:
    """The prepared R4 schema, loaded on first use (≈ 0.1 s) and shared."""
    started = perf_counter()
    raw = orjson.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))
    prepared = R4Schema(raw, _load_resource_types())
    log.debug("loaded the R4 JSON Schema in %.0f ms", (perf_counter() - started) * 1000)
    return prepared
