"""Apply a JSON Patch (RFC 6902, ``application/json-patch+json``; FHIR R4 http.html#patch).

The whole document is checked before anything runs: it must be an array of operation objects
that the ``jsonpatch`` library accepts (a known ``op``, a ``path`` that is a JSON Pointer,
RFC 6902 §4) — else ``Invalid`` (HTTP 400). The operations then run in order on a copy; the first
that cannot apply (a missing target, a failed ``test``, an index out of range; RFC 6902 §5)
stops the patch with ``Unprocessable`` (HTTP 422). Both name the operation by its index.
"""

from __future__ import annotations

import copy

import jsonpatch
import jsonpointer

from resources.errors import Invalid, Unprocessable


def apply_json_patch(resource: dict, operations: object) -> dict:
    """Apply JSON Patch ``operations`` to ``resource``; return a new dict, leaving the input
    untouched."""
    if not isinstance(operations, list):
        raise Invalid("a JSON Patch must be a JSON array of operations")
    steps = [_read(index, operation) for index, operation in enumerate(operations)]
    result = copy.deepcopy(resource)
    for index, (operation, step) in enumerate(zip(operations, steps, strict=True)):
        try:
            result = step.apply(result, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise Unprocessable(
                f"operation {index} ({operation['op']} at {operation['path']!r}): {exc}",
                expression=[f"[{index}]"],
            ) from None
    if not isinstance(result, dict):
        raise Unprocessable("the patch replaces the resource with something that is not an object")
    return result


def _read(index: int, operation: object) -> jsonpatch.JsonPatch:
    """One operation, checked as far as RFC 6902 §4 allows without the target document."""

    def invalid(reason: object) -> Invalid:
        return Invalid(f"operation {index}: {reason}", expression=[f"[{index}]"])

    if not isinstance(operation, dict):
        raise invalid("must be a JSON object")
    op = operation.get("op")
    pointers = ["path", "from"] if op in ("move", "copy") else ["path"]
    for member in pointers:
        if not isinstance(operation.get(member), str):
            raise invalid(f"{op!r} needs a '{member}' member holding a JSON Pointer")
    if op in ("add", "replace", "test") and "value" not in operation:
        raise invalid(f"{op!r} needs a 'value' member")
    try:
        for member in pointers:
            jsonpointer.JsonPointer(operation[member])
        return jsonpatch.JsonPatch([operation])
    except (jsonpatch.InvalidJsonPatch, jsonpointer.JsonPointerException) as exc:
        raise invalid(exc) from None
