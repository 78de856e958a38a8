"""CodeSystem $lookup and $subsumes results (FHIR R4 codesystem-operations.html#lookup,
#subsumes) as Parameters resources."""

from __future__ import annotations

from collections.abc import Sequence

from terminology.codesystem import CodeSystem


def lookup(cs: CodeSystem, code: str, properties: Sequence[str] = ()) -> dict:
    """name, version, display, designations and properties of ``code``; ``properties``: the
    property codes wanted (all when empty); ``definition``, ``parent`` and ``child`` come from
    the concept's definition and the hierarchy."""
    concept = cs.require(code)
    params: list[dict] = [{"name": "name", "valueString": cs.name or cs.url or "(unnamed)"}]
    if cs.version:
        params.append({"name": "version", "valueString": cs.version})
    params.append({"name": "display", "valueString": concept.display or concept.code})
    for d in concept.designations:
        parts = []
        if d.get("language"):
            parts.append({"name": "language", "valueCode": d["language"]})
        if isinstance(d.get("use"), dict):
            parts.append({"name": "use", "valueCoding": d["use"]})
        parts.append({"name": "value", "valueString": d.get("value") or ""})
        params.append({"name": "designation", "part": parts})
    wanted = set(properties)
    listed = []
    for p in concept.properties:
        value = next(((k, v) for k, v in p.items() if k.startswith("value")), None)
        if p.get("code") and value is not None:
            listed.append((p["code"], value[0], value[1]))
    derived = [("parent", "valueCode", c) for c in concept.parents] + [
        ("child", "valueCode", c) for c in concept.children
    ]
    if concept.definition:  # R4 lists definition among the properties every system has
        derived.insert(0, ("definition", "valueString", concept.definition))
    seen = {(c, str(v)) for c, _k, v in listed}
    for prop_code, key, value in listed + [d for d in derived if (d[0], d[2]) not in seen]:
        if wanted and prop_code not in wanted:
            continue
        params.append(
            {
                "name": "property",
                "part": [
                    {"name": "code", "valueCode": prop_code},
                    {"name": "value", key: value},
                ],
            }
        )
    return {"resourceType": "Parameters", "parameter": params}


def subsumes(cs: CodeSystem, code_a: str, code_b: str) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "outcome", "valueCode": cs.subsumes(code_a, code_b)}],
    }
