"""Test content: a small CodeSystem with a hierarchy (nesting, ``parent`` properties, two
parents, an inactive concept) and a ValueSet over it, and readers of the official R4 examples."""

from __future__ import annotations

import copy

import orjson

from tests.shared import shared_path

CS_URL = "urn:test:findings"
PROP = "http://hl7.org/fhir/concept-properties#"

CODE_SYSTEM = {
    "resourceType": "CodeSystem",
    "url": CS_URL,
    "version": "1",
    "name": "TestFindings",
    "status": "active",
    "content": "complete",
    "caseSensitive": True,
    "property": [
        {"code": "parent", "uri": PROP + "parent", "type": "code"},
        {"code": "inactive", "uri": PROP + "inactive", "type": "boolean"},
        {"code": "region", "type": "string"},
    ],
    "concept": [
        {
            "code": "finding",
            "display": "Clinical finding",
            "concept": [
                {
                    "code": "skin",
                    "display": "Skin lesion",
                    "concept": [
                        {
                            "code": "melanoma",
                            "display": "Malignant melanoma",
                            "definition": "A malignant tumour of melanocytes",
                            "property": [{"code": "region", "valueString": "skin"}],
                            "designation": [{"language": "fr", "value": "Mélanome malin"}],
                        },
                        {"code": "naevus", "display": "Benign naevus"},
                    ],
                },
                {
                    "code": "lung",
                    "display": "Lung finding",
                    "concept": [
                        {
                            "code": "nodule",
                            "display": "Pulmonary nodule",
                            "property": [{"code": "region", "valueString": "chest"}],
                        },
                        {"code": "pneumonia", "display": "Pneumonia"},
                    ],
                },
            ],
        },
        {
            "code": "metastasis",
            "display": "Lung metastasis of melanoma",
            "property": [
                {"code": "parent", "valueCode": "melanoma"},
                {"code": "parent", "valueCode": "nodule"},
            ],
        },
        {
            "code": "old-skin",
            "display": "Skin lesion (retired code)",
            "property": [
                {"code": "parent", "valueCode": "skin"},
                {"code": "inactive", "valueBoolean": True},
            ],
        },
    ],
}


def code_system(**changes: object) -> dict:
    return {**copy.deepcopy(CODE_SYSTEM), **changes}


def value_set(url: str, *include: dict, exclude: tuple[dict, ...] = (), **kw: object) -> dict:
    compose: dict = {"include": list(include)}
    if exclude:
        compose["exclude"] = list(exclude)
    return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": compose, **kw}


def example(name: str) -> dict:
    return orjson.loads(shared_path("fhir", "r4-examples", name).read_bytes())


class Stored:
    """A ``find(res_type, query)`` over a list of resources, answering ``url`` / ``version``
    and the ConceptMap ``source-system`` / ``source-code`` (``target-*``) queries the way the
    server's search does."""

    def __init__(self, *resources: dict) -> None:
        self.resources = list(resources)

    def __call__(self, res_type: str, query) -> list[dict]:  # type: ignore[no-untyped-def]
        out = []
        for r in self.resources:
            if r["resourceType"] != res_type:
                continue
            if all(_matches(r, k, v) for k, v in query):
                out.append(r)
        return out


def _matches(r: dict, key: str, value: str) -> bool:
    if key in ("url", "version"):
        return r.get(key) == value
    if key == "_id":
        return r.get("id") == value
    side, _, what = key.partition("-")
    groups = r.get("group") or []
    if what == "system":
        return any(g.get(side) == value for g in groups)
    elements = [e for g in groups for e in g.get("element") or []]
    if side == "source":
        return any(e.get("code") == value for e in elements)
    return any(t.get("code") == value for e in elements for t in e.get("target") or [])
