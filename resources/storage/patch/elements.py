"""Which elements repeat and which are choice types, read from the fhir.resources R4B models.

A FHIRPath Patch names elements the JSON may not yet contain (``add`` of ``identifier`` to a
Patient without one), so the patch needs the element definitions to place a value: a repeating
element is a JSON array even with one item (FHIR R4 json.html#arrays), and a choice element
``value[x]`` is written with its type, ``valueString`` (formats.html#choice). The R4B models
match R4 (4.0.1) for these two facts on all but a few R4B-reworked resources; a resource type the
models do not know gives ``None`` and the patch falls back to the shape already in the JSON.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase

Model = type  # a pydantic model class from fhir.resources.R4B


@dataclass(frozen=True)
class Child:
    """What the definitions say of one JSON property of a complex element."""

    repeats: bool  # max cardinality > 1: always a JSON array
    model: Model | None  # the model of a complex type; None for a primitive
    choice: str | None  # for ``valueString`` of ``value[x]``: "value"


def resource_model(resource_type: object) -> Model | None:
    """The model of a resource type, or ``None`` if the R4B models do not define it."""
    if not isinstance(resource_type, str):
        return None
    try:
        return get_fhir_model_class(resource_type)
    except ValueError:
        return None


def child(model: Model | None, key: str) -> Child | None:
    """The definition of JSON property ``key`` (``_birthDate`` included) of ``model``."""
    if model is None:
        return None
    return _children(model).get(key)


def choice_keys(model: Model | None, base: str) -> dict[str, str]:
    """The JSON keys of choice element ``base`` of ``model``, by type suffix: ``{"String":
    "valueString", ...}``; empty if ``base`` is not a choice element."""
    if model is None:
        return {}
    return _choices(model).get(base, {})


@cache
def _children(model: Model) -> dict[str, Child]:
    out: dict[str, Child] = {}
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if name == "fhir_comments":
            continue
        repeats, target = _unwrap(field.annotation)
        choice = extra.get("one_of_many")
        out[field.alias or name] = Child(
            repeats=repeats,
            model=target,
            choice=choice if isinstance(choice, str) and not name.endswith("__ext") else None,
        )
    return out


@cache
def _choices(model: Model) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, info in _children(model).items():
        if info.choice is not None:
            out.setdefault(info.choice, {})[key[len(info.choice) :]] = key
    return out


def _unwrap(annotation: object) -> tuple[bool, Model | None]:
    """(repeats, model) from a field annotation such as ``Optional[List[IdentifierType]]``."""
    repeats = False
    stack = [annotation]
    target: Model | None = None
    while stack:
        item = stack.pop()
        origin = typing.get_origin(item)
        if origin is list:
            repeats = True
            stack.extend(typing.get_args(item))
        elif origin in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(item))
        elif isinstance(item, type) and issubclass(item, FhirBase):
            klass = getattr(item, "get_model_klass", None)
            if klass is not None:
                target = klass()
    return repeats, target
