"""The fast path of expression extraction gives exactly what fhirpathpy gives, on every R4
example and every definition that applies to it."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from resources.search import extract
from resources.search.definitions import SearchParameterRegistry
from resources.search.indexer import Indexer
from tests.resources.search import oracle


def _key(values: list) -> list[bytes]:
    return sorted({orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values})


def test_fast_path_equals_fhirpathpy_on_all_examples(
    registry: SearchParameterRegistry, examples: list[dict]
) -> None:
    compiled: dict[tuple[str, str], extract.Extractor | None] = {}
    checked = 0
    slow: Counter[str] = Counter()
    mismatches = []
    for res in examples:
        res_type = res["resourceType"]
        for param in registry.for_type(res_type).values():
            if not param.expression:
                continue
            for part in extract.split_union(param.expression):
                if not extract.applies_to(part, res_type):
                    assert oracle.evaluate_part(part, res) == [], part
                    continue
                key = (res_type, part)
                if key not in compiled:
                    try:
                        compiled[key] = extract.compile_fast(res_type, part)
                    except extract.NotFast:
                        compiled[key] = None
                fast = compiled[key]
                if fast is None:
                    slow[part] += 1
                    continue
                checked += 1
                got, want = _key(fast(res)), _key(oracle.evaluate_part(part, res))
                if got != want:
                    mismatches.append((res_type, res["id"], param.code, part, got, want))
    assert not mismatches, mismatches[:5]
    assert checked > 14000
    # Only Bundle.entry[0].resource (a resource, not a path into this one) needs fhirpathpy.
    assert set(slow) == {"Bundle.entry[0].resource"}


def test_every_applicable_part_compiles_fast(registry: SearchParameterRegistry) -> None:
    """Across all 146 types, the definitions' parts that still go to fhirpathpy."""
    slow = set()
    total = 0
    for res_type in registry.resource_types():
        for param in registry.for_type(res_type).values():
            if not param.expression:
                continue
            plan = extract.ExpressionPlan(res_type, param.expression)
            total += len(plan.parts)
            if not plan.fast:
                slow.add(param.expression)
    assert total > 1500
    assert slow <= {"Bundle.entry[0].resource"}, slow


def test_indexer_rows_are_the_same_with_and_without_fast_path(
    registry: SearchParameterRegistry, examples: list[dict]
) -> None:
    fast, slow = Indexer(registry), Indexer(registry, allow_fast=False)
    for res in examples:
        assert fast.raw_rows(res) == slow.raw_rows(res), res["id"]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"reference": "Patient/123"}, "Patient"),
        ({"reference": "Patient/123/_history/2"}, "Patient"),
        ({"reference": "http://x.org/fhir/Practitioner/9"}, "Practitioner"),
        ({"reference": "#contained"}, None),
        ({"reference": "urn:uuid:1234"}, None),
        ({"type": "Device", "identifier": {"value": "1"}}, "Device"),
        ({"display": "nobody"}, None),
    ],
)
def test_reference_type(reference: dict, expected: str | None) -> None:
    assert extract.reference_type(reference) == expected


def test_custom_expression_falls_back_to_fhirpathpy() -> None:
    plan = extract.ExpressionPlan("Patient", "Patient.name.given.first()")
    assert not plan.fast
    assert plan({"resourceType": "Patient", "name": [{"given": ["A", "B"]}]}) == [("string", "A")]


def test_as_is_a_per_item_filter() -> None:
    obs = {
        "resourceType": "Observation",
        "component": [
            {"valueQuantity": {"value": 1}},
            {"valueCodeableConcept": {"text": "x"}},
            {"valueQuantity": {"value": 2}},
        ],
    }
    plan = extract.ExpressionPlan("Observation", "(Observation.component.value as Quantity)")
    assert plan.fast
    assert plan(obs) == [("Quantity", {"value": 1}), ("Quantity", {"value": 2})]
    slow = extract.ExpressionPlan(
        "Observation", "(Observation.component.value as Quantity)", allow_fast=False
    )
    assert slow(obs) == plan(obs)
