"""Read a FHIRPath Patch document (a ``Parameters`` resource) into typed operations.

FHIR R4 fhirpatch.html: each ``Parameters.parameter`` named ``operation`` carries the parts
``type``, ``path``, ``name``, ``value``, ``index``, ``source`` and ``destination``; which parts an
operation takes is fixed by its type (the table on that page, profile ``fhirpath-patch``, whose
part slicing is closed). Anything else makes the document malformed: ``Invalid`` (HTTP 400),
naming the operation by its position in ``Parameters.parameter``.
"""

from __future__ import annotations

from dataclasses import dataclass

from resources.errors import Invalid
from resources.storage.patch.path_syntax import PathSyntaxError, check_syntax, split_list_path

# Parts each operation type requires, and the further parts it allows (fhirpatch.html table).
REQUIRED = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_STRING_TYPES = ("valueString", "valueCode")
_INTEGER_TYPES = ("valueInteger", "valueUnsignedInt", "valuePositiveInt")


class _Malformed(ValueError):
    """Why one operation is malformed; ``read_operations`` makes it an ``Invalid``."""


@dataclass(frozen=True)
class Operation:
    """One FHIRPath Patch operation; ``number`` is its position in ``Parameters.parameter``."""

    number: int
    type: str
    path: str
    name: str | None = None
    value: dict | None = None  # the ``value`` part itself: value[x], resource, or nested parts
    index: int | None = None
    source: int | None = None
    destination: int | None = None
    # insert and move: the path of the element holding the list (None: the resource) and its name
    list_holder: str | None = None
    list_name: str | None = None

    @property
    def label(self) -> str:
        return f"operation {self.number} ({self.type} at {self.path!r})"

    @property
    def expression(self) -> str:
        return f"Parameters.parameter[{self.number}]"


def read_operations(parameters: object) -> list[Operation]:
    """The operations of a FHIRPath Patch ``Parameters``, in order; ``Invalid`` if malformed."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise Invalid("a FHIRPath Patch must be a Parameters resource")
    entries = parameters.get("parameter", [])
    if not isinstance(entries, list):
        raise Invalid("Parameters.parameter must be an array", expression=["Parameters.parameter"])
    operations = []
    for number, entry in enumerate(entries):
        try:
            operations.append(_read_operation(number, entry))
        except _Malformed as exc:
            raise Invalid(
                f"operation {number}: {exc}", expression=[f"Parameters.parameter[{number}]"]
            ) from None
    return operations


def _read_operation(number: int, entry: object) -> Operation:
    if not isinstance(entry, dict) or entry.get("name") != "operation":
        raise _Malformed("each parameter of a FHIRPath Patch must be named 'operation'")
    parts = _parts_by_name(entry.get("part"))
    op_type = _string(parts.pop("type", None), "type")
    if op_type not in REQUIRED:
        raise _Malformed(
            f"unknown operation type {op_type!r} (expected one of {', '.join(REQUIRED)})"
        )
    required = REQUIRED[op_type]
    missing = [name for name in required if name not in parts]
    if missing:
        raise _Malformed(f"{op_type} needs the part(s) {', '.join(missing)}")
    extra = sorted(set(parts) - set(required))
    if extra:
        raise _Malformed(f"{op_type} does not take the part(s) {', '.join(extra)}")
    path = _string(parts["path"], "path")
    try:
        check_syntax(path)
    except PathSyntaxError as exc:
        raise _Malformed(f"path {path!r} is not a valid FHIRPath expression ({exc})") from None
    value = parts.get("value")
    if value is not None:
        _check_value(value, "value")
    list_holder = list_name = None
    if op_type in ("insert", "move"):
        split = split_list_path(path)
        if split is None:
            raise _Malformed(
                f"{op_type} needs the path of a list, ending in its element name "
                f"(e.g. Patient.identifier), not {path!r}"
            )
        list_holder, list_name = split
    return Operation(
        number=number,
        type=op_type,
        path=path,
        name=_string(parts["name"], "name") if "name" in parts else None,
        value=value,
        index=_integer(parts["index"], "index") if "index" in parts else None,
        source=_integer(parts["source"], "source") if "source" in parts else None,
        destination=(
            _integer(parts["destination"], "destination") if "destination" in parts else None
        ),
        list_holder=list_holder,
        list_name=list_name,
    )


def _parts_by_name(parts: object) -> dict[str, dict]:
    if not isinstance(parts, list) or not parts:
        raise _Malformed("an operation needs its parts (type, path, ...)")
    out: dict[str, dict] = {}
    for part in parts:
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str):
            raise _Malformed("every part needs a name")
        if name not in {"type", "path", "name", "value", "index", "source", "destination"}:
            raise _Malformed(f"unknown part {name!r}")
        if name in out:
            raise _Malformed(f"part {name!r} appears more than once")
        out[name] = part
    return out


def _string(part: dict | None, name: str) -> str:
    value = _only_value(part, name, _STRING_TYPES) if part is not None else None
    if not isinstance(value, str) or not value.strip():
        raise _Malformed(f"part {name!r} needs a non-empty {' or '.join(_STRING_TYPES)}")
    return value


def _integer(part: dict, name: str) -> int:
    value = _only_value(part, name, _INTEGER_TYPES)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Malformed(f"part {name!r} needs a non-negative valueInteger")
    return value


def _only_value(part: dict, name: str, allowed: tuple[str, ...]) -> object:
    keys = value_keys(part)
    if len(keys) != 1 or keys[0] not in allowed or "part" in part:
        raise _Malformed(f"part {name!r} needs exactly one {' or '.join(allowed)}")
    return part[keys[0]]


def _check_value(part: dict, label: str) -> None:
    """A value part carries exactly one of value[x], resource, or nested parts; each nested part
    is named and is itself a value part (fhirpatch.html, 'anonymous types')."""
    kinds = len(value_keys(part)) + ("resource" in part) + ("part" in part)
    if kinds != 1:
        raise _Malformed(f"part {label!r} needs exactly one value[x], resource, or nested parts")
    if "resource" in part and not isinstance(part["resource"], dict):
        raise _Malformed(f"part {label!r} has a resource that is not a JSON object")
    if "part" in part:
        nested = part["part"]
        if not isinstance(nested, list) or not nested:
            raise _Malformed(f"part {label!r} has no nested parts")
        for sub in nested:
            name = sub.get("name") if isinstance(sub, dict) else None
            if not isinstance(name, str) or not name:
                raise _Malformed(f"a nested part of {label!r} has no name")
            _check_value(sub, f"{label}.{name}")


def value_keys(part: dict) -> list[str]:
    """The ``value[x]`` keys of a part (``valueString``, ``valueHumanName`` ...)."""
    return [k for k in part if k.startswith("value") and k[5:6].isupper()]
