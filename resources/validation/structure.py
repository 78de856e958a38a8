"""Check 1 of :mod:`resources.validation`: the rules of the FHIR JSON format that a JSON Schema
cannot state (spec: json.html), in one walk that also lists the nested resources for check 2.

One walk over a resource, guided by the R4 element tables of :mod:`resources.validation.schema`,
reports every

* unknown element: a property the R4 definition of the object does not have (json.html: a
  property that is not an element of the type is an error), ``resourceType`` outside a resource
  included;
* empty element: ``{}``, ``[]`` or ``""`` (json.html: no empty objects, arrays or strings; an
  element has a value or children, ele-1);
* misplaced ``null``: allowed only inside a primitive array, where the aligned ``_name`` array
  carries the extension for that position (json.html, representing primitive elements); both
  arrays then have the same length;
* bad resource ``id`` (datatypes.html#id: ``[A-Za-z0-9\\-\\.]{1,64}``);
* nested resource (``contained``, ``Bundle.entry.resource``, ``Parameters.parameter.resource``,
  ``Bundle.entry.response.outcome``) without a known R4 ``resourceType``.

Nested resources of known type are listed so that the caller validates each with its own type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from resources.errors import Issue
from resources.validation.schema import ElementSpec, R4Schema, expression

ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class NestedResource:
    """A resource inside the one being validated, at ``path``, of R4 type ``type``."""

    path: Path
    type: str


@dataclass(slots=True)
class Structure:
    """What the walk found: the issues, the nested resources of known type, and the paths of
    nested objects that are not resources of a known R4 type."""

    issues: list[Issue] = field(default_factory=list)
    nested: list[NestedResource] = field(default_factory=list)
    opaque: list[Path] = field(default_factory=list)


def inspect(resource: dict, type_name: str, schema: R4Schema) -> Structure:
    """Walk ``resource`` (whose ``resourceType`` is the known R4 type ``type_name``)."""
    walk = _Walk(schema, type_name)
    walk.resource(resource, type_name, ())
    return walk.found


class _Walk:
    def __init__(self, schema: R4Schema, root: str) -> None:
        self.schema = schema
        self.root = root
        self.found = Structure()

    def issue(self, code: str, path: Path, text: str) -> None:
        where = expression(self.root, path)
        self.found.issues.append(Issue(code, f"{where}: {text}", expression=(where,)))

    def resource(self, node: dict, type_name: str, path: Path) -> None:
        rid = node.get("id")
        if isinstance(rid, str) and not ID.fullmatch(rid):
            self.issue(
                "value",
                path + ("id",),
                f"{rid[:80]!r} is not a valid resource id (1 to 64 of A-Z a-z 0-9 - .)",
            )
        self.object(node, type_name, path)

    def object(self, node: dict, definition: str, path: Path) -> None:
        if not node:
            self.issue("structure", path, "empty object; FHIR JSON does not allow empty elements")
            return
        elements = self.schema.elements(definition)
        for key, value in node.items():
            spec = elements.get(key)
            if spec is None:
                self.issue(
                    "structure",
                    path + (key,),
                    f"unknown element {key!r}: {_owner(definition)} has no such element in FHIR R4",
                )
            elif value is None:
                self.issue(
                    "structure",
                    path + (key,),
                    "null is not allowed here (only inside an array of primitives aligned with its _ array)",
                )
            elif isinstance(value, list):
                if spec.array:
                    self.array(node, key, value, spec, path + (key,))
                elif not spec.primitive:
                    # The R4 JSON Schema's complex types do not say "type": "object", so an
                    # array in place of a single Meta, Narrative, CodeableConcept... passes it.
                    self.issue(
                        "structure",
                        path + (key,),
                        f"{key} is a single {spec.type} in FHIR R4, not an array",
                    )
            elif not spec.array:
                self.value(value, spec, path + (key,))

    def array(self, node: dict, key: str, items: list, spec: ElementSpec, path: Path) -> None:
        if not items:
            self.issue("structure", path, "empty array; FHIR JSON does not allow empty elements")
            return
        partner = _partner(node, key)
        if partner is not None and not key.startswith("_") and len(partner) != len(items):
            self.issue(
                "structure",
                path,
                f"{len(items)} values but {len(partner)} entries in _{key}; the two arrays must align",
            )
        for index, item in enumerate(items):
            if item is None:
                if partner is None or index >= len(partner) or partner[index] is None:
                    self.issue(
                        "structure",
                        path + (index,),
                        "null is allowed in an array only where the aligned _ array has an entry",
                    )
            else:
                self.value(item, spec, path + (index,))

    def value(self, value: Any, spec: ElementSpec, path: Path) -> None:
        if isinstance(value, dict):
            if spec.type == "Resource":
                self.nested(value, path)
            elif not spec.primitive:
                self.object(value, spec.type, path)
        elif not spec.primitive:
            # As with arrays above, the schema's complex types accept any JSON scalar too.
            found = (
                "a boolean" if isinstance(value, bool) else f"the {type(value).__name__} {value!r}"
            )
            self.issue(
                "structure", path, f"expected a JSON object (FHIR {spec.type}), found {found}"
            )
        elif value == "" and spec.primitive:
            self.issue(
                "value", path, f"empty string; a FHIR {spec.type} has at least one character"
            )

    def nested(self, node: dict, path: Path) -> None:
        kind = node.get("resourceType")
        if kind is None:
            self.found.opaque.append(path)
            self.issue(
                "required", path + ("resourceType",), "a nested resource needs a resourceType"
            )
        elif not isinstance(kind, str) or kind not in self.schema.resource_types:
            self.found.opaque.append(path)
            self.issue(
                "invalid", path + ("resourceType",), f"{kind!r} is not a FHIR R4 resource type"
            )
        else:
            self.found.nested.append(NestedResource(path, kind))
            self.resource(node, kind, path)


def _partner(node: dict, key: str) -> list | None:
    """The aligned array of a primitive array: ``_given`` for ``given`` and the reverse."""
    other = node.get(key[1:] if key.startswith("_") else "_" + key)
    return other if isinstance(other, list) else None


def _owner(definition: str) -> str:
    """How diagnostics name a definition: ``HumanName``, but not the schema's backbone names."""
    return "this backbone element" if "_" in definition else definition
