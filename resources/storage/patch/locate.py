"""Evaluate a FHIRPath Patch ``path`` and find where in the resource JSON each selected element is.

FHIR R4 fhirpatch.html: an operation acts on the element(s) a FHIRPath expression selects, but
fhirpathpy returns values, not places. Each selected node is located in the JSON tree:

- a complex element (a JSON object) by identity: fhirpathpy's raw nodes hold the very objects of
  the tree, and every object of the tree is indexed by ``id()`` with its holder, key and index;
- a primitive by the concrete path fhirpathpy records on its node (``propName``, e.g.
  ``Patient.name[0].given[2]``), walked through the tree; choice elements (``Patient.deceased``)
  resolve to their typed key (``deceasedBoolean``), and a primitive's ``id``/``extension`` live in
  its ``_name`` sibling (json.html#primitive). The value found there must equal the node's value.

A node that cannot be located (a literal, a computed value) is an error, never a guess.
fhirpathpy recovers silently from syntax errors, so a path is first parsed strictly
(``path_syntax``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from resources.storage.patch.path_syntax import check_syntax, quote_member_keywords

R4_MODEL = models["r4"]
_SEGMENT = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?")


class NotAnElement(LookupError):
    """The ``path`` selected something that is not an element of the resource."""


@dataclass(frozen=True)
class Location:
    """Where one element sits: ``holder[key]``, or ``holder[key][index]`` when it repeats."""

    holder: dict
    key: str
    index: int | None = None

    @property
    def value(self) -> Any:
        value = self.holder[self.key]
        return value if self.index is None else value[self.index]


class Tree:
    """A resource's JSON with an index from each of its objects to the place it sits.

    The index is built once; a caller that changes the JSON builds a new ``Tree``.
    """

    def __init__(self, root: dict) -> None:
        self.root = root
        self._places: dict[int, Location] = {}
        for location in _walk(root):
            value = location.value
            if isinstance(value, dict):
                self._places[id(value)] = location

    def place_of(self, obj: dict) -> Location | None:
        """Where JSON object ``obj`` sits; ``None`` for the resource itself."""
        if obj is self.root:
            return None
        try:
            return self._places[id(obj)]
        except KeyError:
            raise NotAnElement("the object is not part of this resource") from None

    def select(self, path: str) -> list[Location | None]:
        """The places of the elements ``path`` selects; ``None`` stands for the resource itself.

        Raises ``path_syntax.PathSyntaxError`` for a malformed path, ``NotAnElement`` when a selected item
        is not an element of the resource, and ``ValueError`` when evaluation fails.
        """
        evaluate = _compiled(path)
        try:
            nodes = evaluate(self.root, {})
        except Exception as exc:  # fhirpathpy raises bare Exceptions ("Not implemented: f")
            raise ValueError(f"cannot evaluate {path!r}: {exc}") from exc
        return [self._locate(node, path) for node in nodes]

    def _locate(self, node: object, path: str) -> Location | None:
        if not isinstance(node, ResourceNode):
            raise NotAnElement(f"{path!r} selects a computed value ({node!r}), not an element")
        data = node.data
        if data is self.root:
            return None
        if isinstance(data, dict) and id(data) in self._places:
            return self._places[id(data)]
        location = self._resolve(node.propName) if node.propName else None
        if location is None or not _same(location.value, data):
            raise NotAnElement(f"{path!r} selects a value that is not an element of the resource")
        return location

    def _resolve(self, prop_name: str) -> Location | None:
        """Walk a fhirpathpy concrete path such as ``Patient.contact[0].name.text``."""
        first, *segments = prop_name.split(".")
        if first != self.root.get("resourceType") or not segments:
            return None
        location: Location | None = None
        for segment in segments:
            match = _SEGMENT.fullmatch(segment)
            obj = self.root if location is None else element_object(location)
            if match is None or obj is None:
                return None
            key = _json_key(obj, match.group(1))
            if key is None:
                return None
            value = obj[key]
            if match.group(2) is None:
                if isinstance(value, list):
                    return None
                location = Location(obj, key)
            else:
                index = int(match.group(2))
                if not isinstance(value, list) or index >= len(value):
                    return None
                location = Location(obj, key, index)
        return location


def element_object(location: Location, *, create: bool = False) -> dict | None:
    """The JSON object holding the children of the element at ``location``: the element itself
    when complex, else the primitive's ``_name`` sibling (json.html#primitive), created on
    request."""
    value = location.value
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return None
    holder, ext_key = location.holder, "_" + location.key
    if location.index is None:
        ext = holder.get(ext_key)
        if ext is None and create:
            ext = holder[ext_key] = {}
        return ext if isinstance(ext, dict) else None
    exts = holder.get(ext_key)
    if exts is None:
        if not create:
            return None
        exts = holder[ext_key] = [None] * len(holder[location.key])
    if not isinstance(exts, list):
        return None
    exts.extend([None] * (len(holder[location.key]) - len(exts)))
    if exts[location.index] is None and create:
        exts[location.index] = {}
    ext = exts[location.index]
    return ext if isinstance(ext, dict) else None


def _json_key(obj: dict, name: str) -> str | None:
    """The key of element ``name`` in ``obj``: ``name`` itself, or the typed key of a choice
    element (``deceased`` → ``deceasedBoolean``)."""
    if name in obj:
        return name
    typed = [
        key
        for key in obj
        if key.startswith(name) and key[len(name) :] in _CHOICE_TYPES and obj[key] is not None
    ]
    return typed[0] if len(typed) == 1 else None


def _walk(obj: dict) -> Iterator[Location]:
    for key, value in obj.items():
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield Location(obj, key, index)
                if isinstance(item, dict):
                    yield from _walk(item)
        else:
            yield Location(obj, key)
            if isinstance(value, dict):
                yield from _walk(value)


def _same(found: object, selected: object) -> bool:
    if isinstance(found, dict):
        return found is selected
    return type(found) is type(selected) and found == selected


def _type_suffixes() -> frozenset[str]:
    types = {t for choices in R4_MODEL["choiceTypePaths"].values() for t in choices}
    return frozenset(t[0].upper() + t[1:] for t in types)


_CHOICE_TYPES = _type_suffixes()


@lru_cache(maxsize=512)
def _compiled(path: str) -> Callable[..., list]:
    check_syntax(path)
    return fhirpathpy.compile(
        quote_member_keywords(path), model=R4_MODEL, options={"returnRawData": True}
    )
