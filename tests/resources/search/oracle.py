"""The independent oracle: fhirpathpy evaluating a definition's expression as written.

Two adjustments make fhirpathpy evaluate what the R4 definitions mean, and nothing else:
- ``Resource.x`` / ``DomainResource.x`` roots: fhirpathpy matches a root type name only against
  ``resourceType``, so the root is replaced by the resource's own type;
- ``X as T`` on several items: fhirpathpy enforces FHIRPath's singleton rule and raises, where the
  definitions mean a per-item filter; only then is the part re-evaluated with ``ofType(T)``.
``resolve()`` (not implemented by fhirpathpy) returns a stub resource of the type named by the
reference.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

MODEL = models["r4"]
PRIMITIVES = {
    "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary",
    "instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt",
    "positiveInt", "uuid", "xhtml",
}  # fmt: skip


def _resolve(inputs: list) -> list:
    out = []
    for ref in inputs:
        if not isinstance(ref, dict):
            continue
        target = ref.get("reference")
        if isinstance(target, str) and not target.startswith(("#", "urn:")):
            parts = target.split("/_history/")[0].split("/")
            if len(parts) >= 2 and parts[-2][:1].isupper():
                out.append(ResourceNode.create_node({"resourceType": parts[-2]}))
        elif target is None and isinstance(ref.get("type"), str):
            out.append(ResourceNode.create_node({"resourceType": ref["type"]}))
    return out


OPTIONS = {
    "userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}},
    "returnRawData": True,
}


def split_union(expression: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expression):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return parts


def _of_type(part: str) -> str:
    def fix(t: str) -> str:
        low = t[0].lower() + t[1:]
        return low if low in PRIMITIVES else t

    part = re.sub(r"\(([^()]+?) as (\w+)\)", lambda m: f"{m[1]}.ofType({fix(m[2])})", part)
    return re.sub(r"\.as\((\w+)\)", lambda m: f".ofType({fix(m[1])})", part)


@cache
def _compiled(part: str):  # type: ignore[no-untyped-def]
    return fhirpathpy.compile(part, MODEL, OPTIONS)


def evaluate_part(part: str, resource: dict) -> list[tuple[Any, Any]]:
    """(type, value) of each result node, like ``ResourceNode.path`` / ``.data``."""
    res_type = resource["resourceType"]
    for base in ("Resource.", "DomainResource."):
        if part.startswith(base):
            part = res_type + "." + part[len(base) :]
    try:
        nodes = _compiled(part)(resource)
    except ValueError as exc:
        if "singleton" not in str(exc):
            raise
        nodes = _compiled(_of_type(part))(resource)
    out = []
    for n in nodes:
        if isinstance(n, ResourceNode):
            path = n.path
            if isinstance(path, str) and path.startswith("System."):
                path = "string"
            out.append((path, n.data))
        elif isinstance(n, bool):
            out.append(("boolean", n))
        else:
            out.append((None, n))
    return out


def evaluate(expression: str, resource: dict) -> list[tuple[Any, Any]]:
    """All parts of an expression (part by part, so result nodes keep their types)."""
    out = []
    for part in split_union(expression):
        out.extend(evaluate_part(part, resource))
    return out
