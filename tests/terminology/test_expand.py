"""terminology/expand.py: compose include/exclude, concept lists, filters, value set imports,
contained code systems, stored expansions, expansion parameters and the size limit, on the
shipped R4 content, the official R4 examples and a small test code system."""

from __future__ import annotations

import pytest

from resources.errors import Invalid
from terminology import Terminology
from terminology.errors import NotExpandable, TooCostly
from terminology.expand import ExpandParams
from tests.terminology.content import CS_URL, Stored, code_system, example, value_set

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"


def service(*stored: dict, max_expansion: int = 10_000) -> Terminology:
    return Terminology(Stored(code_system(), *stored), max_expansion=max_expansion)


def codes(t: Terminology, vs: dict) -> list[str]:
    return [c for _s, c in t.expander.codes(vs)]


def test_administrative_gender() -> None:
    t = Terminology()
    vs = t.resolver.require("ValueSet", GENDER_VS)
    out = t.expander.expand(vs, ExpandParams())
    assert out["url"] == GENDER_VS
    assert out["expansion"]["total"] == 4
    assert [(c["system"], c["code"], c["display"]) for c in out["expansion"]["contains"]] == [
        (GENDER_CS, "male", "Male"),
        (GENDER_CS, "female", "Female"),
        (GENDER_CS, "other", "Other"),
        (GENDER_CS, "unknown", "Unknown"),
    ]


def test_builtin_value_set_importing_another() -> None:
    """R4 'all-languages'-style imports: FHIRAllTypes = data types + resource types."""
    t = Terminology()
    vs = t.resolver.require("ValueSet", "http://hl7.org/fhir/ValueSet/all-types")
    got = set(codes(t, vs))
    assert {"Patient", "Observation", "HumanName", "Quantity"} <= got


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"op": "is-a", "value": "skin"}, {"skin", "melanoma", "naevus", "metastasis", "old-skin"}),
        ({"op": "descendent-of", "value": "lung"}, {"nodule", "pneumonia", "metastasis"}),
        ({"op": "is-not-a", "value": "finding"}, set()),
        ({"op": "is-not-a", "value": "skin"}, {"finding", "lung", "nodule", "pneumonia"}),
        ({"op": "generalizes", "value": "naevus"}, {"naevus", "skin", "finding"}),
        ({"op": "is-a", "value": "no-such-code"}, set()),
    ],
)
def test_hierarchy_filters(flt: dict, expected: set[str]) -> None:
    t = service()
    vs = value_set("urn:vs", {"system": CS_URL, "filter": [{"property": "concept", **flt}]})
    assert set(codes(t, vs)) == expected


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"property": "code", "op": "regex", "value": "n.*"}, {"naevus", "nodule"}),
        ({"property": "region", "op": "=", "value": "skin"}, {"melanoma"}),
        ({"property": "region", "op": "in", "value": "skin, chest"}, {"melanoma", "nodule"}),
        ({"property": "parent", "op": "=", "value": "lung"}, {"nodule", "pneumonia"}),
        ({"property": "concept", "op": "in", "value": "skin,lung"}, {"skin", "lung"}),
        ({"property": "inactive", "op": "=", "value": "true"}, {"old-skin"}),
        ({"property": "region", "op": "exists", "value": "true"}, {"melanoma", "nodule"}),
    ],
)
def test_property_filters(flt: dict, expected: set[str]) -> None:
    vs = value_set("urn:vs", {"system": CS_URL, "filter": [flt]})
    assert set(codes(service(), vs)) == expected


def test_not_in_and_filters_intersect() -> None:
    vs = value_set(
        "urn:vs",
        {
            "system": CS_URL,
            "filter": [
                {"property": "concept", "op": "is-a", "value": "finding"},
                {"property": "region", "op": "not-in", "value": "skin,chest"},
            ],
        },
    )
    assert set(codes(service(), vs)) == {
        "finding",
        "skin",
        "naevus",
        "lung",
        "pneumonia",
        "metastasis",  # below finding through its parent properties
        "old-skin",
    }


def test_concept_list_keeps_order_and_displays_and_drops_unknown_codes() -> None:
    vs = value_set(
        "urn:vs",
        {
            "system": CS_URL,
            "concept": [
                {"code": "pneumonia"},
                {"code": "melanoma", "display": "Melanoma (local name)"},
                {"code": "not-a-code"},
            ],
        },
    )
    out = service().expander.expand(vs, ExpandParams())["expansion"]["contains"]
    assert [(c["code"], c["display"]) for c in out] == [
        ("pneumonia", "Pneumonia"),
        ("melanoma", "Melanoma (local name)"),
    ]


def test_exclude_and_import() -> None:
    skin = value_set(
        "urn:vs:skin",
        {"system": CS_URL, "filter": [{"property": "concept", "op": "is-a", "value": "skin"}]},
    )
    vs = value_set(
        "urn:vs:outer",
        {"valueSet": ["urn:vs:skin"]},
        {"system": GENDER_CS, "concept": [{"code": "other"}]},
        exclude=({"system": CS_URL, "concept": [{"code": "old-skin"}]},),
    )
    t = service(skin)
    assert codes(t, vs) == ["skin", "melanoma", "naevus", "metastasis", "other"]


def test_import_intersects_with_system() -> None:
    lung = value_set(
        "urn:vs:lung",
        {"system": CS_URL, "filter": [{"property": "concept", "op": "is-a", "value": "lung"}]},
    )
    vs = value_set(
        "urn:vs",
        {
            "system": CS_URL,
            "valueSet": ["urn:vs:lung"],
            "filter": [{"property": "concept", "op": "is-a", "value": "melanoma"}],
        },
    )
    assert codes(service(lung), vs) == ["metastasis"]


def test_compose_inactive_false_drops_inactive_codes() -> None:
    vs = value_set(
        "urn:vs",
        {"system": CS_URL, "filter": [{"property": "concept", "op": "is-a", "value": "skin"}]},
    )
    vs["compose"]["inactive"] = False
    assert "old-skin" not in codes(service(), vs)


def test_parameters_filter_paging_active_only_designations() -> None:
    t = service()
    vs = value_set("urn:vs", {"system": CS_URL})
    full = t.expander.expand(vs, ExpandParams())["expansion"]
    assert full["total"] == 9
    active = t.expander.expand(vs, ExpandParams(active_only=True))["expansion"]
    assert active["total"] == 8
    text = t.expander.expand(vs, ExpandParams(filter="lung"))["expansion"]
    assert {c["code"] for c in text["contains"]} == {"lung", "metastasis"}
    assert t.expander.expand(vs, ExpandParams(filter="mal mel"))["expansion"]["total"] == 1
    page = t.expander.expand(vs, ExpandParams(count=3, offset=3))["expansion"]
    assert page["total"] == 9 and page["offset"] == 3
    assert [c["code"] for c in page["contains"]] == [c["code"] for c in full["contains"][3:6]]
    d = t.expander.expand(vs, ExpandParams(filter="melanoma", include_designations=True))
    assert d["expansion"]["contains"][0]["designation"][0]["value"] == "Mélanome malin"
    inactive = next(c for c in full["contains"] if c["code"] == "old-skin")
    assert inactive["inactive"] is True


def test_too_costly() -> None:
    t = service(max_expansion=5)
    with pytest.raises(TooCostly, match="more than 5"):
        t.expander.codes(value_set("urn:vs", {"system": CS_URL}))


def test_unknown_code_system_is_not_expandable() -> None:
    t = Terminology()
    vs = t.resolver.require("ValueSet", "http://hl7.org/fhir/ValueSet/observation-codes")
    with pytest.raises(NotExpandable, match="loinc.org"):
        t.expander.codes(vs)


def test_filter_on_a_property_the_system_lacks_is_not_expandable() -> None:
    """The official valueset-example-filter filters ACME codes on a property that the example
    CodeSystem only describes in prose."""
    t = Terminology(Stored(example("codesystem-example.json")))
    with pytest.raises(NotExpandable, match="acme-plasma"):
        t.expander.codes(example("valueset-example-filter.json"))


def test_import_cycle_is_refused() -> None:
    a = value_set("urn:vs:a", {"valueSet": ["urn:vs:b"]})
    b = value_set("urn:vs:b", {"valueSet": ["urn:vs:a"]})
    with pytest.raises(NotExpandable, match="imports itself"):
        service(a, b).expander.codes(a)


def test_bad_regex_is_invalid() -> None:
    vs = value_set(
        "urn:vs", {"system": CS_URL, "filter": [{"property": "code", "op": "regex", "value": "("}]}
    )
    with pytest.raises(Invalid, match="regular expression"):
        service().expander.codes(vs)


def test_official_examples_contained_system_and_stored_expansion() -> None:
    t = Terminology()
    hierarchical = example("valueset-example-hierarchical.json")
    got = t.expander.codes(hierarchical)  # "system": "#hacked", a contained CodeSystem
    assert ("http://hl7.org/fhir/hacked", "structure") in got
    assert len(got) == 11  # the example lists "lock" and "tbrottled", not codes of the system
    # compose draws on LOINC (not held here): the expansion it carries is used, flattened
    expansion = example("valueset-example-expansion.json")
    got = t.expander.codes(expansion)
    assert len(got) == expansion["expansion"]["total"] == 8
    assert ("http://loinc.org", "9342-7") in got  # from a nested contains
