"""Token ``:in`` / ``:not-in`` / ``:below`` / ``:above`` (search.html#token) with a terminology
service plugged into the search engine, on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import pytest

from resources.errors import Invalid
from resources.search import SearchEngine, SearchParameterRegistry
from terminology import Terminology
from tests.resources.search.conftest import BASE, Store
from tests.terminology.content import CS_URL, Stored, code_system, value_set

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
SKIN_VS = "urn:test:vs:skin"


def obs(oid: str, *codings: tuple[str, str]) -> dict:
    coding = [{"system": s, "code": c} for s, c in codings]
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": coding}}


@pytest.fixture
def coded(store: Store, registry: SearchParameterRegistry) -> Store:
    engine = SearchEngine(registry, base_urls=(BASE,))
    skin = value_set(
        SKIN_VS,
        {"system": CS_URL, "filter": [{"property": "concept", "op": "is-a", "value": "skin"}]},
    )
    engine.terminology = Terminology(Stored(code_system(), skin), max_expansion=6)
    s = Store(store.conn, engine)
    s.add(
        obs("o-melanoma", (CS_URL, "melanoma")),
        obs("o-naevus", (CS_URL, "naevus")),
        obs("o-nodule", (CS_URL, "nodule"), ("http://loinc.org", "1-8")),
        obs("o-metastasis", (CS_URL, "metastasis")),
        obs("o-loinc", ("http://loinc.org", "melanoma")),  # same code, another system
        obs("o-none"),
        {"resourceType": "Patient", "id": "p-f", "gender": "female"},
        {"resourceType": "Patient", "id": "p-x"},
    )
    return s


@pytest.mark.parametrize(
    ("res_type", "query", "expected"),
    [
        ("Observation", f"code:in={SKIN_VS}", {"o-melanoma", "o-naevus", "o-metastasis"}),
        ("Observation", f"code:not-in={SKIN_VS}", {"o-nodule", "o-loinc", "o-none"}),
        ("Observation", f"code:below={CS_URL}|skin", {"o-melanoma", "o-naevus", "o-metastasis"}),
        ("Observation", f"code:below={CS_URL}|lung", {"o-nodule", "o-metastasis"}),
        ("Observation", f"code:below={CS_URL}|melanoma", {"o-melanoma", "o-metastasis"}),
        (
            "Observation",
            f"code:above={CS_URL}|metastasis",
            {"o-melanoma", "o-nodule", "o-metastasis"},
        ),
        ("Observation", f"code:above={CS_URL}|finding", set()),
        (
            "Observation",
            f"code:below={CS_URL}|naevus,{CS_URL}|nodule",
            {"o-naevus", "o-nodule", "o-metastasis"},
        ),
        ("Observation", f"code:in={SKIN_VS}&code:below={CS_URL}|lung", {"o-metastasis"}),
        ("Patient", f"gender:in={GENDER_VS}", {"p-f"}),
        ("Patient", f"gender:not-in={GENDER_VS}", {"p-x"}),
    ],
)
def test_terminology_modifiers(coded: Store, res_type: str, query: str, expected: set[str]) -> None:
    assert coded.ids(res_type, query) == expected


def test_errors_are_bad_requests(coded: Store) -> None:
    with pytest.raises(Invalid, match="no ValueSet"):
        coded.ids("Observation", "code:in=urn:no-such-vs")
    with pytest.raises(Invalid, match="system\\|code"):
        coded.ids("Observation", "code:below=skin")
    with pytest.raises(Invalid, match="not defined"):
        coded.ids("Observation", f"code:below={CS_URL}|nope")
    with pytest.raises(Invalid, match="no CodeSystem"):
        coded.ids("Observation", "code:below=http://loinc.org|1-8")
    with pytest.raises(Invalid, match="known only by name") as err:
        coded.ids("Observation", "code:below=http://snomed.info/sct|404684003")  # not-present
    assert err.value.issues[0].code == "not-supported"
    with pytest.raises(Invalid) as err:
        coded.ids("Observation", "code:in=urn:no-such-vs")
    assert err.value.issues[0].code == "not-found"


def test_expansion_over_the_limit_is_too_costly(coded: Store) -> None:
    all_codes = value_set("urn:test:vs:all", {"system": CS_URL})
    coded.search.terminology.resolver.find.resources.append(all_codes)  # type: ignore[union-attr]
    with pytest.raises(Invalid, match="more than 6") as err:
        coded.ids("Observation", "code:in=urn:test:vs:all")
    assert err.value.issues[0].code == "too-costly"
