"""terminology/translate.py: ConceptMap $translate on the official R4 example maps."""

from __future__ import annotations

from terminology.translate import result, translate
from tests.terminology.content import example

FHIR_USE = "http://hl7.org/fhir/address-use"
V3_USE = "http://terminology.hl7.org/CodeSystem/v3-AddressUse"


def test_forward() -> None:
    cm = example("conceptmap-example.json")
    matches = translate(cm, FHIR_USE, "home")
    assert [(m.equivalence, m.system, m.code) for m in matches] == [("equivalent", V3_USE, "H")]
    assert matches[0].source == "http://hl7.org/fhir/ConceptMap/101"
    assert result(matches)


def test_disjoint_is_not_a_result() -> None:
    matches = translate(example("conceptmap-example.json"), FHIR_USE, "old")
    assert [(m.equivalence, m.code) for m in matches] == [("disjoint", "BAD")]
    assert not result(matches)


def test_reverse() -> None:
    matches = translate(example("conceptmap-example.json"), V3_USE, "WP", reverse=True)
    assert [(m.system, m.code) for m in matches] == [(FHIR_USE, "work")]


def test_other_system_or_target_finds_nothing() -> None:
    cm = example("conceptmap-example.json")
    assert translate(cm, "urn:other", "home") == []
    assert translate(cm, FHIR_USE, "home", target_system="urn:other") == []


def test_unmapped_modes() -> None:
    base = {
        "resourceType": "ConceptMap",
        "url": "urn:cm",
        "group": [{"source": "urn:a", "target": "urn:b", "element": [{"code": "x"}]}],
    }
    provided = {**base, "group": [{**base["group"][0], "unmapped": {"mode": "provided"}}]}
    assert [(m.equivalence, m.code) for m in translate(provided, "urn:a", "y")] == [("equal", "y")]
    fixed = {**base, "group": [{**base["group"][0], "unmapped": {"mode": "fixed", "code": "z"}}]}
    assert [m.code for m in translate(fixed, "urn:a", "y")] == ["z"]
    other = example("conceptmap-example-2.json")  # unmapped: other-map .../map2
    target = {
        "resourceType": "ConceptMap",
        "url": "http://example.org/fhir/ConceptMap/map2",
        "group": [
            {
                "source": "http://example.org/fhir/example1",
                "target": "urn:c",
                "element": [{"code": "q", "target": [{"code": "Q", "equivalence": "wider"}]}],
            }
        ],
    }
    maps = {target["url"]: target}
    got = translate(other, "http://example.org/fhir/example1", "q", other_map=maps.get)
    assert [(m.equivalence, m.system, m.code, m.source) for m in got] == [
        ("wider", "urn:c", "Q", target["url"])
    ]
    code = translate(other, "http://example.org/fhir/example1", "code")[0]
    assert code.code == "code2"
    assert code.to_parameter()["part"][0] == {"name": "equivalence", "valueCode": "equivalent"}
