"""Check 2 of :mod:`resources.validation`: run a type's compiled R4 JSON Schema on one resource
and turn each violation into an :class:`Issue` with a FHIRPath-style location and a plain
diagnostic (spec: json.html#schema, datatypes.html).

Schema rule → IssueType: ``type`` → structure (wrong JSON type), ``required`` → required,
``pattern``/``minimum``/``maximum``/``enum``/``const`` → value, anything else → invalid.
"""

from __future__ import annotations

from typing import Any

import fastjsonschema

from resources.errors import Issue
from resources.validation.schema import R4Schema, expression

Path = tuple[str | int, ...]

# How each primitive is written in JSON (others are JSON strings), and what its text must look like.
JSON_KIND = {"boolean": "a JSON boolean", "decimal": "a JSON number", "integer": "a JSON integer"}
JSON_KIND |= {"positiveInt": "a JSON integer", "unsignedInt": "a JSON integer"}
FORMATS = {
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff]+zz:zz (a time needs a zone)",
    "instant": "YYYY-MM-DDThh:mm:ss[.fff]+zz:zz (or Z)",
    "time": "hh:mm:ss[.fff]",
    "id": '1 to 64 characters from A-Z, a-z, 0-9, "-" and "."',
    "code": "at least one character, no leading, trailing or repeated whitespace",
    "uri": "no whitespace",
    "url": "no whitespace",
    "canonical": "no whitespace",
    "oid": "urn:oid: followed by a dotted OID",
    "uuid": "urn:uuid: followed by a lowercase UUID",
    "base64Binary": "base64 text",
    "string": "at least one character",
    "markdown": "at least one character",
    "integer": "a whole number from -2147483648 to 2147483647",
    "positiveInt": "a whole number from 1 to 2147483647",
    "unsignedInt": "a whole number from 0 to 2147483647",
}


def check(schema: R4Schema, resource: dict, type_name: str, root: str, at: Path) -> list[Issue]:
    """What the R4 JSON Schema of ``type_name`` finds in ``resource``, located at ``at`` inside
    the resource of type ``root`` being validated (``at`` is ``()`` for that resource itself)."""
    try:
        schema.validator(type_name)(resource)
    except fastjsonschema.JsonSchemaValuesException as failed:
        errors = list(failed.errors)
    except fastjsonschema.JsonSchemaValueException as failed:
        errors = [failed]
    else:
        return []
    issues: list[Issue] = []
    for error in errors:
        issues.extend(_issues(schema, error, resource, type_name, root, at))
    return issues


def _issues(
    schema: R4Schema, error: Any, resource: dict, type_name: str, root: str, at: Path
) -> list[Issue]:
    path = _data_path(resource, error.path[1:])
    where = expression(root, at + path)
    spec = None
    for step in schema.steps(type_name, resource, path):
        spec = step.spec
    value, rule = error.value, error.rule
    if rule == "required":
        present = value if isinstance(value, dict) else {}
        return [
            _issue(
                "required", f"{where}.{name}", "required element is missing (R4 cardinality 1..)"
            )
            for name in error.rule_definition
            if name not in present
        ]
    fhir_type = spec.type if spec else "element"
    if rule == "type":
        if spec is not None and spec.array and not (path and isinstance(path[-1], int)):
            expected = "a JSON array"
        elif spec is not None and not spec.primitive:
            expected = "a JSON object"
        else:
            expected = JSON_KIND.get(fhir_type, "a JSON string")
        return [
            _issue(
                "structure",
                where,
                f"expected {expected} (FHIR {fhir_type}), found {_describe(value)}",
            )
        ]
    if rule == "enum":
        allowed = ", ".join(str(code) for code in error.rule_definition if code is not None)
        return [
            _issue(
                "value",
                where,
                f"{shown(value)} is not a valid code here; R4 requires one of: {allowed}",
            )
        ]
    if rule in ("pattern", "minimum", "maximum"):
        hint = FORMATS.get(fhir_type)
        expected = f" (expected {hint})" if hint else ""
        return [_issue("value", where, f"{shown(value)} is not a valid FHIR {fhir_type}{expected}")]
    if rule == "const":
        return [
            _issue(
                "value", where, f"{shown(value)} is wrong here; expected {error.rule_definition!r}"
            )
        ]
    return [_issue("invalid", where, error.message.removeprefix("data"))]


def _issue(code: str, where: str, text: str) -> Issue:
    return Issue(code, f"{where}: {text}", expression=(where,))


def _data_path(resource: Any, raw: list[str]) -> Path:
    """fastjsonschema's path (array indexes as strings) with indexes as ints, following the data."""
    out: list[str | int] = []
    node = resource
    for key in raw:
        if isinstance(node, list) and key.isdigit():
            index = int(key)
            out.append(index)
            node = node[index] if index < len(node) else None
        else:
            out.append(key)
            node = node.get(key) if isinstance(node, dict) else None
    return tuple(out)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {shown(value)}"
    return "an array" if isinstance(value, list) else "an object"


def shown(value: Any, limit: int = 60) -> str:
    """A value as diagnostics quote it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
