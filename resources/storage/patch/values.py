"""Turn the ``value`` part of a FHIRPath Patch operation into the JSON of the element it becomes.

FHIR R4 fhirpatch.html: the value is a ``value[x]`` of the element's type, or, for types that
``value[x]`` cannot carry (backbone elements such as ``Patient.contact``), a set of nested parts
named after the element's children. A choice element takes its JSON key from the value's type
(``deceased`` + ``valueDateTime`` → ``deceasedDateTime``, formats.html#choice), and a primitive
value's ``_valueX`` (its id and extensions) follows it to ``_name`` (json.html#primitive).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from resources.storage.patch.elements import Child, Model, child, choice_keys
from resources.storage.patch.parameters import value_keys


class Misfit(ValueError):
    """The value does not fit the element the operation puts it in."""


@dataclass(frozen=True)
class Value:
    """The JSON of one element, with the ``_name`` object of a primitive when it has one."""

    json: object
    extension: dict | None = None


def type_suffix(part: dict) -> str | None:
    """The type of a ``value[x]`` part (``valueDate`` → ``Date``); ``None`` for nested parts
    or a resource."""
    keys = value_keys(part)
    return keys[0][5:] if keys else None


def element_key(model: Model | None, name: str, suffix: str | None) -> tuple[str, Child | None]:
    """The JSON key of child ``name`` of an element of ``model`` holding a value of type
    ``suffix``, with its definition (``None`` where the models do not know the element)."""
    choices = choice_keys(model, name)
    if choices:
        if suffix is None:
            raise Misfit(f"{name}[x] is a choice element and needs a typed value[x]")
        if suffix not in choices:
            allowed = ", ".join(sorted(choices))
            raise Misfit(f"{name}[x] cannot be a {suffix} (allowed: {allowed})")
        return choices[suffix], child(model, choices[suffix])
    info = child(model, name)
    if model is not None and info is None:
        raise Misfit(f"{model.__name__} has no element {name!r}")
    if info is not None and info.choice is not None and suffix is not None:
        if name != info.choice + suffix:
            raise Misfit(f"{name} cannot hold a {suffix}")
    return name, info


def build(part: dict, info: Child | None) -> Value:
    """The element JSON for value part ``part``, to become an element defined by ``info``."""
    keys = value_keys(part)
    if keys:
        json = copy.deepcopy(part[keys[0]])
        ext = part.get("_" + keys[0])
        _check_kind(json, info, keys[0])
        return Value(json, copy.deepcopy(ext) if isinstance(ext, dict) else None)
    if "resource" in part:
        if info is not None and info.model is None:
            raise Misfit("a resource cannot be the value of a primitive element")
        return Value(copy.deepcopy(part["resource"]))
    if info is not None and info.model is None:
        raise Misfit("nested parts cannot be the value of a primitive element")
    return Value(_from_parts(part["part"], info.model if info else None))


def _from_parts(parts: list[dict], model: Model | None) -> dict:
    """An anonymous (e.g. backbone) element from nested parts, one part per child value."""
    out: dict = {}
    grouped: dict[str, tuple[Child | None, list[Value]]] = {}
    for sub in parts:
        key, info = element_key(model, sub["name"], type_suffix(sub))
        grouped.setdefault(key, (info, []))[1].append(build(sub, info))
    for key, (info, values) in grouped.items():
        repeats = info.repeats if info is not None else len(values) > 1
        if not repeats:
            if len(values) > 1:
                raise Misfit(f"{key} does not repeat, but {len(values)} parts give it a value")
            out[key] = values[0].json
            if values[0].extension is not None:
                out["_" + key] = values[0].extension
            continue
        out[key] = [v.json for v in values]
        if any(v.extension is not None for v in values):
            out["_" + key] = [v.extension for v in values]
    return out


def _check_kind(json: object, info: Child | None, value_key: str) -> None:
    if info is None:
        return
    if info.model is None and isinstance(json, (dict, list)):
        raise Misfit(f"{value_key} is complex, but the element is a primitive")
    if info.model is not None and not isinstance(json, dict):
        raise Misfit(f"{value_key} is a primitive, but the element is complex")
