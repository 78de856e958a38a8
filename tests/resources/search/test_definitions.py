"""The registry of search parameter definitions."""

from __future__ import annotations

import pytest

from resources.errors import Invalid
from resources.search import SearchEngine, SearchParameterRegistry
from resources.search.definitions import SearchParam


def test_loads_the_official_definitions(registry: SearchParameterRegistry) -> None:
    assert len(registry) == 1375
    assert len(registry.resource_types()) == 146
    name = registry.get("Patient", "name")
    assert name is not None and name.type == "string" and name.expression == "Patient.name"


def test_resource_and_domainresource_parameters_apply_to_every_type(
    registry: SearchParameterRegistry,
) -> None:
    for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"):
        assert registry.get("Observation", code) is not None
        assert registry.get("Bundle", code) is not None
    assert registry.get("Patient", "_text") is not None  # DomainResource
    assert registry.get("Bundle", "_text") is None  # Bundle is not a DomainResource


def test_multi_base_parameters(registry: SearchParameterRegistry) -> None:
    a = registry.get("Observation", "patient")
    b = registry.get("Condition", "patient")
    assert a is b and a is not None and "Observation" in a.base and a.type == "reference"
    composite = registry.get("Observation", "code-value-quantity")
    assert composite is not None and len(composite.components) == 2


def _custom(**overrides: object) -> dict:
    sp = {
        "resourceType": "SearchParameter",
        "url": "http://hearth.test/SearchParameter/patient-nickname",
        "name": "nickname",
        "status": "active",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.where(use='nickname').given",
    }
    sp.update(overrides)
    return sp


def test_add_custom_parameter() -> None:
    reg = SearchParameterRegistry.load_default()
    gen = reg.generation
    param = reg.add(_custom())
    assert isinstance(param, SearchParam)
    assert reg.get("Patient", "nickname") is param
    assert reg.generation > gen
    # the same url again replaces it
    reg.add(_custom(code="nick"))
    assert reg.get("Patient", "nickname") is None
    assert reg.get("Patient", "nick") is not None
    assert len(reg) == 1376


def test_custom_parameter_is_indexed_and_searchable(store) -> None:  # type: ignore[no-untyped-def]
    reg = SearchParameterRegistry.load_default()
    engine = SearchEngine(reg)
    engine.add_search_parameter(_custom())
    store.search = engine
    store.add(
        {
            "resourceType": "Patient",
            "id": "p1",
            "name": [
                {"family": "Smith", "given": ["Robert"]},
                {"use": "nickname", "given": ["Bob"]},
            ],
        },
        {"resourceType": "Patient", "id": "p2", "name": [{"given": ["Bob"]}]},
    )
    assert store.ids("Patient", "nickname=bo") == {"p1"}
    assert store.ids("Patient", "given=bob") == {"p1", "p2"}


@pytest.mark.parametrize(
    "bad",
    [
        {"code": None},
        {"type": "nonsense"},
        {"base": []},
        {"expression": None},
        {"expression": "Patient.name.where("},
        {"resourceType": "Patient"},
    ],
)
def test_add_rejects_unusable_definitions(bad: dict) -> None:
    reg = SearchParameterRegistry.load_default()
    with pytest.raises(Invalid):
        reg.add(_custom(**bad))


def test_shipped_implicit_code_systems_match_the_definitions() -> None:
    """``data/code-systems.json`` is what ``derive`` makes of the R4 StructureDefinitions and
    ValueSets."""
    import gzip

    import orjson

    from resources.search.codesystems import derive, implicit_systems
    from tests.shared import shared_path

    defs = shared_path("fhir", "r4-definitions")

    def entries(name: str) -> list[dict]:
        raw = (defs / name).read_bytes()
        if name.endswith(".gz"):
            raw = gzip.decompress(raw)
        return [e["resource"] for e in orjson.loads(raw)["entry"]]

    derived = derive(
        entries("profiles-resources.json.gz") + entries("profiles-types.json"),
        entries("valuesets.json.gz"),
    )
    assert derived == implicit_systems()
    assert derived["Patient.gender"] == "http://hl7.org/fhir/administrative-gender"
    assert derived["Observation.status"] == "http://hl7.org/fhir/observation-status"
    assert len(derived) > 300
