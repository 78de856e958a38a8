"""Apply a FHIRPath Patch (FHIR R4 fhirpatch.html) to a resource's JSON.

Operations run in order on a copy; the first that cannot apply stops the patch with
``Unprocessable`` (HTTP 422) naming it by its position in ``Parameters.parameter``. A malformed
document is ``Invalid`` (HTTP 400) before anything runs. Per the spec:

- ``add`` appends child ``name`` to the one element ``path`` selects; a non-repeating child may
  only be added when absent;
- ``insert`` puts ``value`` at ``index`` (0 ≤ index ≤ length) of the list ``path`` names;
- ``delete`` removes the one element ``path`` selects, and succeeds when it selects nothing;
- ``replace`` swaps the one element ``path`` selects for ``value`` (the whole element: a
  primitive's extensions go with it unless ``value`` brings its own);
- ``move`` moves the list item at ``source`` to ``destination`` (both 0 ≤ i < length).

Objects and arrays left empty by a delete are removed, since JSON FHIR forbids them
(json.html). Validating the result, and refusing changes to ``id`` or ``resourceType``, is the
caller's job.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from resources.errors import Unprocessable
from resources.storage.patch.elements import Child, Model, child, choice_keys, resource_model
from resources.storage.patch.locate import Location, NotAnElement, Tree, element_object
from resources.storage.patch.parameters import Operation, read_operations
from resources.storage.patch.values import Misfit, Value, build, element_key, type_suffix


class _Failed(Exception):
    """Why an operation cannot apply; ``apply_fhirpath_patch`` makes it ``Unprocessable``."""


def apply_fhirpath_patch(resource: dict, parameters: object) -> dict:
    """Apply FHIRPath Patch ``parameters`` to ``resource``; return a new dict, leaving the
    input untouched."""
    operations = read_operations(parameters)
    result = copy.deepcopy(resource)
    for operation in operations:
        try:
            _APPLY[operation.type](Tree(result), operation)
        except (_Failed, Misfit) as exc:
            raise Unprocessable(
                f"{operation.label}: {exc}", expression=[operation.expression]
            ) from None
    return result


def _add(tree: Tree, op: Operation) -> None:
    target = _one(tree, op.path, "adding")
    obj = tree.root if target is None else element_object(target, create=True)
    if obj is None:
        raise _Failed(f"{op.path} is not an element that can have children")
    assert op.name is not None and op.value is not None  # required parts, checked on reading
    model = _model_of(tree, target)
    key, info = element_key(model, op.name, type_suffix(op.value))
    value = build(op.value, info)
    existing = obj.get(key)
    if info.repeats if info is not None else isinstance(existing, list):
        _insert(obj, key, len(existing) if isinstance(existing, list) else 0, value)
        return
    taken = list(choice_keys(model, info.choice).values()) if info and info.choice else [key]
    if any(k in obj for k in taken):
        raise _Failed(f"{op.name} already has a value and does not repeat; use replace")
    obj[key] = value.json
    if value.extension is not None:
        obj["_" + key] = value.extension


def _insert_op(tree: Tree, op: Operation) -> None:
    assert op.value is not None and op.index is not None
    obj, key, info = _list_of(tree, op, "inserting")
    value = build(op.value, info)
    items = obj.get(key)
    length = len(items) if isinstance(items, list) else 0
    if op.index > length:
        raise _Failed(f"index {op.index} is out of range: the list has {length} item(s)")
    _insert(obj, key, op.index, value)


def _delete(tree: Tree, op: Operation) -> None:
    targets = _select(tree, op.path)
    if not targets:
        return  # "delete ... (if found)": deleting nothing succeeds
    if len(targets) > 1:
        raise _Failed(f"{op.path} selects {len(targets)} elements; delete removes exactly one")
    target = targets[0]
    if target is None:
        raise _Failed("the resource itself cannot be deleted")
    _remove(target.holder, target.key, target.index)
    _prune(tree, target.holder)


def _replace(tree: Tree, op: Operation) -> None:
    assert op.value is not None
    target = _one(tree, op.path, "replacing")
    if target is None:
        raise _Failed("the resource itself cannot be replaced")
    holder, key, index = target.holder, target.key, target.index
    model = _model_of_object(tree, holder)
    info = child(model, key)
    suffix = type_suffix(op.value)
    if info is not None and info.choice is not None and suffix is not None:
        key, info = element_key(model, info.choice, suffix)
    value = build(op.value, info)
    if index is None:
        holder.pop(target.key)
        holder.pop("_" + target.key, None)
        holder[key] = value.json
        if value.extension is not None:
            holder["_" + key] = value.extension
        return
    holder[key][index] = value.json
    exts = holder.get("_" + key)
    if value.extension is not None or isinstance(exts, list):
        exts = _aligned_extensions(holder, key)
        exts[index] = value.extension
        _drop_empty_extensions(holder, key)


def _move(tree: Tree, op: Operation) -> None:
    assert op.source is not None and op.destination is not None
    obj, key, _ = _list_of(tree, op, "moving")
    items = obj.get(key)
    length = len(items) if isinstance(items, list) else 0
    for label, at in (("source", op.source), ("destination", op.destination)):
        if at >= length:
            raise _Failed(f"{label} {at} is out of range: the list has {length} item(s)")
    assert isinstance(items, list)
    items.insert(op.destination, items.pop(op.source))
    if isinstance(obj.get("_" + key), list):
        exts = _aligned_extensions(obj, key)
        exts.insert(op.destination, exts.pop(op.source))


_APPLY: dict[str, Callable[[Tree, Operation], None]] = {
    "add": _add,
    "insert": _insert_op,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}


# --- selecting -----------------------------------------------------------------------------


def _select(tree: Tree, path: str) -> list[Location | None]:
    try:
        return tree.select(path)
    except (NotAnElement, ValueError) as exc:
        raise _Failed(str(exc)) from None


def _one(tree: Tree, path: str, doing: str) -> Location | None:
    """The one element ``path`` selects (``None``: the resource itself)."""
    targets = _select(tree, path)
    if not targets:
        raise _Failed(f"No content found at {path} when {doing}")
    if len(targets) > 1:
        raise _Failed(f"{path} selects {len(targets)} elements when {doing}; it must select one")
    return targets[0]


def _list_of(tree: Tree, op: Operation, doing: str) -> tuple[dict, str, Child | None]:
    """The object holding the list an insert or move acts on, the list's key, its definition."""
    assert op.list_name is not None
    target = None if op.list_holder is None else _one(tree, op.list_holder, doing)
    obj = tree.root if target is None else element_object(target, create=True)
    if obj is None:
        raise _Failed(f"{op.list_holder} is not an element that can have children")
    key, info = element_key(_model_of(tree, target), op.list_name, None)
    items = obj.get(key)
    if items is not None and not isinstance(items, list):
        raise _Failed(f"{op.path} is not a list")
    if items is None and info is not None and not info.repeats:
        raise _Failed(f"{op.path} is not a repeating element")
    return obj, key, info


# --- element definitions -------------------------------------------------------------------


def _model_of(tree: Tree, location: Location | None) -> Model | None:
    """The model of the object that holds the children of the element at ``location``."""
    if location is None:
        return resource_model(tree.root.get("resourceType"))
    value = location.value
    if isinstance(value, dict) and "resourceType" in value:
        return resource_model(value["resourceType"])
    key = location.key if isinstance(value, dict) else "_" + location.key
    info = child(_model_of_object(tree, location.holder), key)
    return info.model if info is not None else None


def _model_of_object(tree: Tree, obj: dict) -> Model | None:
    if "resourceType" in obj:
        return resource_model(obj["resourceType"])
    try:
        return _model_of(tree, tree.place_of(obj))
    except NotAnElement:
        return None


# --- changing lists, keeping a primitive list's ``_name`` array aligned (json.html) ----------


def _insert(obj: dict, key: str, index: int, value: Value) -> None:
    items = obj.setdefault(key, [])
    if not isinstance(items, list):
        raise _Failed(f"{key} is not a list")
    items.insert(index, value.json)
    if value.extension is not None or isinstance(obj.get("_" + key), list):
        exts = obj.get("_" + key)
        if not isinstance(exts, list):
            exts = obj["_" + key] = []
        exts.extend([None] * (len(items) - 1 - len(exts)))
        exts.insert(index, value.extension)
        _drop_empty_extensions(obj, key)


def _remove(holder: dict, key: str, index: int | None) -> None:
    """Remove ``holder[key]`` (or one item of it) with the matching ``_key`` entry."""
    if index is None:
        del holder[key]
        holder.pop("_" + key, None)
        return
    items = holder[key]
    del items[index]
    exts = holder.get("_" + key)
    if isinstance(exts, list) and index < len(exts):
        del exts[index]
    if not items:
        del holder[key]
        holder.pop("_" + key, None)
    else:
        _drop_empty_extensions(holder, key)


def _prune(tree: Tree, obj: dict) -> None:
    """Remove ``obj`` and then each ancestor that the removal leaves empty."""
    while obj is not tree.root and not obj:
        place = tree.place_of(obj)
        assert place is not None
        if place.key.startswith("_") and place.index is not None:
            place.holder[place.key][place.index] = None  # keep the alignment with the values
            _drop_empty_extensions(place.holder, place.key[1:])
        else:
            _remove(place.holder, place.key, place.index)
        obj = place.holder


def _aligned_extensions(obj: dict, key: str) -> list:
    exts = obj.get("_" + key)
    if not isinstance(exts, list):
        exts = obj["_" + key] = []
    exts.extend([None] * (len(obj[key]) - len(exts)))
    return exts


def _drop_empty_extensions(obj: dict, key: str) -> None:
    exts = obj.get("_" + key)
    if isinstance(exts, list) and all(e is None for e in exts):
        del obj["_" + key]
