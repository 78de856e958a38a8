"""Hand-written cases from FHIR R4 search.html, per parameter type, prefix, modifier, chain and
``_has``; each runs on SQLite and on PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from resources.errors import Invalid, NotSupported
from resources.search import SearchEngine
from resources.search.contained_match import matching_contained
from resources.storage.schema import resource
from tests.resources.search.conftest import Store

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def patient(pid: str, **kw: object) -> dict:
    return {"resourceType": "Patient", "id": pid, **kw}


def obs(oid: str, **kw: object) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", **kw}


def code(c: str, system: str = LOINC, display: str | None = None, text: str | None = None) -> dict:
    coding = {"system": system, "code": c}
    if display:
        coding["display"] = display
    out: dict = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


# -- string ------------------------------------------------------------------------------------
@pytest.fixture
def people(store: Store) -> Store:
    store.add(
        patient("p1", name=[{"family": "Chalmers", "given": ["Peter", "James"]}]),
        patient(
            "p2", name=[{"family": "Müller", "given": ["Éve"]}], address=[{"city": "PleasantVille"}]
        ),
        patient("p3", name=[{"family": "Everywoman", "given": ["Eve"]}]),
        patient("p4", name=[{"text": "Dr. Ånne O'Neil"}]),
    )
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=eve", {"p2", "p3"}),
        ("name=EVE", {"p2", "p3"}),
        ("name=Éve", {"p2", "p3"}),
        ("name=ev", {"p2", "p3"}),
        ("name=chalmers", {"p1"}),
        ("name=james", {"p1"}),
        ("name=dr. anne", {"p4"}),
        ("name:exact=Eve", {"p3"}),
        ("name:exact=Éve", {"p2"}),
        ("name:exact=eve", set()),
        ("name:contains=ll", {"p2"}),
        ("name:contains=WOMAN", {"p3"}),
        ("name:contains=o'n", {"p4"}),
        ("family=müll", {"p2"}),
        ("family=mull", {"p2"}),
        ("given=eve,peter", {"p1", "p2", "p3"}),
        ("name=eve&name=muller", {"p2"}),
        ("address-city=pleasant", {"p2"}),
        ("address=pleasantville", {"p2"}),
        ("name=zz", set()),
        ("name=100%25", set()),
        ("name:contains=_", set()),
    ],
)
def test_string(people: Store, query: str, expected: set[str]) -> None:
    assert people.ids("Patient", query) == expected


# -- token -------------------------------------------------------------------------------------
@pytest.fixture
def coded(store: Store) -> Store:
    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    store.add(
        patient(
            "t1",
            gender="male",
            active=True,
            identifier=[
                {"system": "urn:sys", "value": "123", "type": mr},
                {"value": "nosys"},
            ],
            telecom=[
                {"system": "phone", "value": "555-1234"},
                {"system": "email", "value": "a@b.org"},
            ],
        ),
        patient(
            "t2",
            gender="female",
            active=False,
            identifier=[{"system": "urn:other", "value": "123"}],
        ),
        patient("t3"),
        obs("o1", code=code("29463-7", display="Body Weight", text="weight")),
        obs("o2", code=code("a|b,c", system="urn:odd")),
        obs(
            "o3",
            code={
                "coding": [
                    {"system": LOINC, "code": "8867-4"},
                    {"system": "urn:local", "code": "HR"},
                ]
            },
        ),
    )
    return store


@pytest.mark.parametrize(
    ("res_type", "query", "expected"),
    [
        ("Patient", "gender=male", {"t1"}),
        ("Patient", "gender=male,female", {"t1", "t2"}),
        ("Patient", "gender=http://hl7.org/fhir/administrative-gender|male", {"t1"}),
        ("Patient", "gender=http://hl7.org/fhir/administrative-gender|", {"t1", "t2"}),
        ("Patient", "gender=|male", set()),  # gender has an implicit system
        ("Patient", "gender=urn:other|male", set()),
        ("Patient", "gender:not=male", {"t2", "t3"}),
        ("Patient", "gender:not=male,female", {"t3"}),
        ("Patient", "active=true", {"t1"}),
        ("Patient", "active=false", {"t2"}),
        ("Patient", "identifier=123", {"t1", "t2"}),
        ("Patient", "identifier=urn:sys|123", {"t1"}),
        ("Patient", "identifier=urn:sys|", {"t1"}),
        ("Patient", "identifier=|nosys", {"t1"}),
        ("Patient", "identifier=|123", set()),
        ("Patient", "identifier=urn:nope|123", set()),
        (
            "Patient",
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|123",
            {"t1"},
        ),
        (
            "Patient",
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|124",
            set(),
        ),
        ("Patient", "telecom=555-1234", {"t1"}),
        ("Patient", "phone=555-1234", {"t1"}),
        ("Patient", "email=555-1234", set()),
        ("Patient", "email=a@b.org", {"t1"}),
        ("Observation", "code=29463-7", {"o1"}),
        ("Observation", "code=http://loinc.org|29463-7", {"o1"}),
        ("Observation", "code=http://snomed.info/sct|29463-7", set()),
        ("Observation", "code=http://loinc.org|", {"o1", "o3"}),
        ("Observation", "code=urn:local|HR", {"o3"}),
        ("Observation", "code=urn:local|HR&code=8867-4", {"o3"}),
        ("Observation", "code=urn:odd|a\\|b\\,c", {"o2"}),
        ("Observation", "code=a\\|b\\,c", {"o2"}),
        ("Observation", "code:text=weight", {"o1"}),
        ("Observation", "code:text=WEI", {"o1"}),
        ("Observation", "code:text=body", {"o1"}),
        ("Observation", "code:text=weight body", set()),
        ("Observation", "code:text=eight", set()),
    ],
)
def test_token(coded: Store, res_type: str, query: str, expected: set[str]) -> None:
    assert coded.ids(res_type, query) == expected


@pytest.mark.parametrize("modifier", ["in", "not-in", "above", "below"])
def test_token_terminology_modifiers_need_a_terminology_service(
    coded: Store, modifier: str
) -> None:
    with pytest.raises(NotSupported, match="terminology"):
        coded.ids("Observation", f"code:{modifier}=http://x.org/ValueSet/vs")


# -- reference ---------------------------------------------------------------------------------
@pytest.fixture
def linked(store: Store) -> Store:
    store.add(
        patient(
            "p1",
            name=[{"family": "Chalmers", "given": ["Peter"]}],
            managingOrganization={"reference": "Organization/org1"},
        ),
        patient(
            "p2",
            name=[{"family": "Other"}],
            managingOrganization={"reference": "Organization/org2"},
        ),
        {
            "resourceType": "Organization",
            "id": "org1",
            "name": "Acme",
            "partOf": {"reference": "Organization/parent"},
        },
        {"resourceType": "Organization", "id": "org2", "name": "Beta"},
        {"resourceType": "Organization", "id": "parent", "name": "Holding"},
        {
            "resourceType": "Group",
            "id": "g1",
            "type": "person",
            "actual": True,
            "name": "Peter's group",
        },
        obs("o1", subject={"reference": "Patient/p1"}, code=code("1234-5")),
        obs("o2", subject={"reference": "Patient/p2/_history/2"}, code=code("1234-5")),
        obs("o3", subject={"reference": "Group/g1"}, code=code("9999-9")),
        obs("o4", subject={"reference": "http://hearth.test/fhir/Patient/p1"}),
        obs("o5", subject={"reference": "http://other.org/fhir/Patient/p1"}),
        obs(
            "o6",
            subject={"identifier": {"system": "urn:mrn", "value": "77"}, "display": "Somebody"},
        ),
        obs("o7", subject={"reference": "#contained"}, contained=[patient("contained")]),
        obs("o8"),
        {
            "resourceType": "Provenance",
            "id": "prov1",
            "target": [{"reference": "Observation/o1"}],
            "recorded": "2020-01-01T00:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/pr1"}}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr1",
            "status": "completed",
            "questionnaire": "http://x.org/Questionnaire/q1|2.0",
        },
    )
    return store


@pytest.mark.parametrize(
    ("res_type", "query", "expected"),
    [
        ("Observation", "subject=Patient/p1", {"o1", "o4"}),
        ("Observation", "subject=p1", {"o1", "o4"}),
        ("Observation", "subject:Patient=p1", {"o1", "o4"}),
        ("Observation", "subject:Group=p1", set()),
        ("Observation", "subject=Patient/p2", {"o2"}),
        ("Observation", "subject=Patient/p2/_history/2", {"o2"}),
        ("Observation", "subject=http://hearth.test/fhir/Patient/p1", {"o1", "o4"}),
        ("Observation", "subject=http://other.org/fhir/Patient/p1", {"o5"}),
        ("Observation", "subject=Patient/p1,Group/g1", {"o1", "o3", "o4"}),
        ("Observation", "patient=g1", set()),
        ("Observation", "patient=p1", {"o1", "o4"}),
        ("Observation", "subject:identifier=urn:mrn|77", {"o6"}),
        ("Observation", "subject:identifier=77", {"o6"}),
        ("Observation", "subject=contained", set()),
        ("Observation", "subject:missing=true", {"o6", "o7", "o8"}),
        ("Observation", "subject:missing=false", {"o1", "o2", "o3", "o4", "o5"}),
        ("QuestionnaireResponse", "questionnaire=http://x.org/Questionnaire/q1", {"qr1"}),
        ("QuestionnaireResponse", "questionnaire=http://x.org/Questionnaire/q1|2.0", {"qr1"}),
        ("QuestionnaireResponse", "questionnaire=http://x.org/Questionnaire/q1|3.0", set()),
        # chains
        ("Observation", "subject.name=peter", {"o1", "o4"}),  # Group has no name parameter
        ("Observation", "subject:Patient.name=peter", {"o1", "o4"}),
        ("Observation", "subject:Patient.name:exact=Peter", {"o1", "o4"}),
        ("Observation", "patient.organization.name=acme", {"o1", "o4"}),
        ("Observation", "patient.organization.partof.name=holding", {"o1", "o4"}),
        (
            "Observation",
            "patient.organization:Organization.partof:Organization._id=parent",
            {"o1", "o4"},
        ),
        ("Observation", "subject:Patient._id=p2", {"o2"}),
        ("Observation", "subject:Patient.name=peter&code=1234-5", {"o1"}),
        ("Observation", "subject=Patient/p1&patient.organization.name=acme", {"o1", "o4"}),
        ("Observation", "subject:missing=false&subject:Patient.name=peter", {"o1", "o4"}),
        ("Observation", "subject:Patient.name=peter,other", {"o1", "o2", "o4"}),
        # reverse chains
        ("Patient", "_has:Observation:patient:code=1234-5", {"p1", "p2"}),
        ("Patient", "_has:Observation:subject:code=9999-9", set()),
        ("Group", "_has:Observation:subject:code=9999-9", {"g1"}),
        (
            "Patient",
            "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/pr1",
            {"p1"},
        ),
        ("Patient", "_has:Observation:patient:_id=o2", {"p2"}),
        (
            "Organization",
            "_has:Patient:organization:_has:Observation:patient:code=1234-5",
            {"org1", "org2"},
        ),
        ("Organization", "_has:Patient:organization:name=peter", {"org1"}),
        ("Patient", "_has:Observation:patient:subject.name=peter", {"p1"}),
    ],
)
def test_reference_chain_and_has(
    linked: Store, res_type: str, query: str, expected: set[str]
) -> None:
    assert linked.ids(res_type, query) == expected


def test_unknown_chain_links_are_reported(linked: Store) -> None:
    compiled = linked.search.compile(
        "Observation", [("subject:Patient.nonsense", "x"), ("code.name", "y")]
    )
    assert [u.name for u in compiled.unsupported] == ["subject:Patient.nonsense", "code.name"]
    compiled = linked.search.compile("Patient", [("_has:Observation:nonsense:code", "x")])
    assert [u.name for u in compiled.unsupported] == ["_has:Observation:nonsense:code"]
    with pytest.raises(NotSupported):
        linked.ids("Observation", "subject:below=Patient/p1")


# -- reference :above / :below (hierarchies) ---------------------------------------------------
@pytest.fixture
def places(store: Store) -> Store:
    """Locations hospital > wing > ward > bed, a clinic apart, and two that are part of each
    other (a cycle); encounters at each."""

    def loc(lid: str, parent: str | None = None) -> dict:
        out: dict = {"resourceType": "Location", "id": lid, "name": lid}
        if parent:
            out["partOf"] = {"reference": f"Location/{parent}"}
        return out

    def enc(eid: str, lid: str) -> dict:
        return {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"code": "AMB"},
            "location": [{"location": {"reference": f"Location/{lid}"}}],
        }

    store.add(
        loc("hospital"),
        loc("wing", "hospital"),
        loc("ward", "wing"),
        loc("bed", "ward"),
        loc("clinic"),
        loc("c1", "c2"),
        loc("c2", "c1"),
        *(enc(f"e-{x}", x) for x in ("hospital", "wing", "ward", "bed", "clinic", "c1")),
    )
    return store


@pytest.mark.parametrize(
    ("res_type", "query", "expected"),
    [
        ("Encounter", "location:below=Location/wing", {"e-wing", "e-ward", "e-bed"}),
        ("Location", "partof:below=wing", {"ward", "bed"}),  # bare id: one target type
        ("Encounter", "location:below=Location/bed", {"e-bed"}),
        ("Encounter", "location:above=Location/ward", {"e-hospital", "e-wing", "e-ward"}),
        ("Encounter", "location:above=Location/hospital", {"e-hospital"}),
        (
            "Encounter",
            "location:below=Location/clinic,Location/ward",
            {"e-clinic", "e-ward", "e-bed"},
        ),
        ("Encounter", "location:below=Location/c2", {"e-c1"}),  # a cycle ends
        ("Encounter", "location:above=Location/c1", {"e-c1"}),
        ("Encounter", "location:below=Location/nowhere", set()),
        # the hierarchy's own parameter, on the hierarchical type itself
        ("Location", "partof:below=Location/wing", {"ward", "bed"}),
        ("Location", "partof:above=Location/bed", {"wing", "ward", "bed"}),
        # combined with other criteria
        ("Encounter", "location:below=Location/hospital&_id=e-ward,e-clinic", {"e-ward"}),
    ],
)
def test_reference_above_and_below(
    places: Store, res_type: str, query: str, expected: set[str]
) -> None:
    assert places.ids(res_type, query) == expected


def test_reference_above_below_without_a_hierarchy_is_refused(places: Store) -> None:
    # Patient's "link" parameter targets Patient and RelatedPerson: no hierarchy of Patients
    with pytest.raises(NotSupported, match="hierarchy of Patient"):
        places.ids("Observation", "subject:below=Patient/p1")
    with pytest.raises(NotSupported, match="absolute URL"):
        places.ids("Encounter", "location:below=http://elsewhere.org/fhir/Location/1")
    with pytest.raises(Invalid, match="Type/id"):
        places.ids("Observation", "subject:below=p1")  # several types, none hierarchical


# -- date --------------------------------------------------------------------------------------
@pytest.fixture
def dated(store: Store) -> Store:
    store.add(
        obs("o1", effectiveDateTime="2013-01-14"),
        obs("o2", effectiveDateTime="2013-01-14T10:00:00Z"),
        obs("o3", effectiveDateTime="2013-01-15"),
        obs("o4", effectivePeriod={"start": "2013-01-10", "end": "2013-01-20"}),
        obs("o5", effectivePeriod={"start": "2013-01-14T23:00:00Z"}),
        obs("o6", effectiveDateTime="2013"),
        obs("o7", effectiveDateTime="2012-12-31T23:59:59Z"),
        obs("o8"),
    )
    return store


ALL_DATED = {f"o{i}" for i in range(1, 8)}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("date=2013-01-14", {"o1", "o2"}),
        ("date=eq2013-01-14", {"o1", "o2"}),
        ("date=ne2013-01-14", {"o3", "o4", "o5", "o6", "o7"}),
        ("date=gt2013-01-14", {"o3", "o4", "o5", "o6"}),
        ("date=lt2013-01-14", {"o4", "o6", "o7"}),
        ("date=ge2013-01-14", {"o1", "o2", "o3", "o4", "o5", "o6"}),
        ("date=le2013-01-14", {"o1", "o2", "o4", "o6", "o7"}),
        ("date=sa2013-01-14", {"o3"}),
        ("date=eb2013-01-14", {"o7"}),
        ("date=ap2013-01-14", ALL_DATED),
        ("date=2013-01", {"o1", "o2", "o3", "o4"}),  # o5 has no end: not inside
        ("date=2013", {"o1", "o2", "o3", "o4", "o6"}),
        ("date=2013-01-14T10:00:00Z", {"o2"}),
        ("date=2013-01-14T20:00:00%2B10:00", set()),
        ("date=2013-01-14T20:00:00+10:00", {"o2"}),
        ("date=2013-01-14T10:00", {"o2"}),
        ("date=ge2013-01-14&date=le2013-01-14", {"o1", "o2", "o4", "o6"}),
        ("date=eb2013-01-01,sa2013-01-31", {"o7"}),
        ("date:missing=true", {"o8"}),
    ],
)
def test_date_prefixes(dated: Store, query: str, expected: set[str]) -> None:
    if "%2B" in query:
        pytest.raises(Invalid, dated.ids, "Observation", query)
        return
    assert dated.ids("Observation", query) == expected


def test_date_ap_is_approximate(store: Store) -> None:
    store.add(
        obs("near", effectiveDateTime="2000-01-20"),
        obs("far", effectiveDateTime="1990-01-01"),
    )
    # 10% of the ~25 years between 2000 and now is ~2.5 years either side
    assert store.ids("Observation", "date=ap2000-01-01") == {"near"}


def test_last_updated(store: Store) -> None:
    store.add(patient("old"), last_updated=datetime(2020, 5, 1, 12, tzinfo=UTC))
    store.add(patient("new"), last_updated=datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC))
    assert store.ids("Patient", "_lastUpdated=2020-05-01") == {"old"}
    assert store.ids("Patient", "_lastUpdated=gt2020-05-01") == {"new"}
    assert store.ids("Patient", "_lastUpdated=ge2020-05-01T12:00:00Z") == {"old", "new"}
    assert store.ids("Patient", "_lastUpdated=lt2024") == {"old"}
    assert store.ids("Patient", "_lastUpdated=le2024-05-01T12:30:15.25Z") == {"old", "new"}
    assert store.ids("Patient", "_lastUpdated=2024-05-01T12:30:15Z") == {"new"}
    assert store.ids("Patient", "_lastUpdated=2024-05-01T14:30:15+02:00") == {"new"}
    assert store.ids("Patient", "_lastUpdated=ne2024-05") == {"old"}
    assert store.ids("Patient", "_lastUpdated=sa2020&_lastUpdated=eb2025") == {"new"}


@pytest.mark.parametrize(
    "bad", ["date=2013-13-45", "date=yesterday", "date=gt", "_lastUpdated=2020-02-30"]
)
def test_bad_dates_are_invalid(dated: Store, bad: str) -> None:
    with pytest.raises(Invalid):
        dated.ids("Observation", bad)


# -- number ------------------------------------------------------------------------------------
@pytest.fixture
def risks(store: Store) -> Store:
    def risk(rid: str, p: float) -> dict:
        return {
            "resourceType": "RiskAssessment",
            "id": rid,
            "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": p}],
        }

    store.add(risk("r20", 0.2), risk("r25", 0.25), risk("r30", 0.3), risk("r100", 100))
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("probability=0.2", {"r20"}),
        ("probability=0.20", {"r20"}),
        ("probability=0.3", {"r25", "r30"}),  # [0.25, 0.35)
        ("probability=0.30", {"r30"}),
        ("probability=0.25", {"r25"}),
        ("probability=100", {"r100"}),
        ("probability=1e2", {"r100"}),
        ("probability=99.6", set()),
        ("probability=ne0.2", {"r25", "r30", "r100"}),
        ("probability=gt0.2", {"r25", "r30", "r100"}),
        ("probability=ge0.25", {"r25", "r30", "r100"}),
        ("probability=lt0.25", {"r20"}),
        ("probability=le0.25", {"r20", "r25"}),
        ("probability=sa0.25", {"r30", "r100"}),
        ("probability=eb0.25", {"r20"}),
        ("probability=ap0.25", {"r25"}),
        ("probability=ap95", {"r100"}),
        ("probability=gt0.2&probability=lt0.3", {"r25"}),
        ("probability=0.20,0.30", {"r20", "r30"}),
    ],
)
def test_number(risks: Store, query: str, expected: set[str]) -> None:
    assert risks.ids("RiskAssessment", query) == expected


def test_bad_number_is_invalid(risks: Store) -> None:
    with pytest.raises(Invalid):
        risks.ids("RiskAssessment", "probability=abc")


# -- quantity ----------------------------------------------------------------------------------
@pytest.fixture
def measured(store: Store) -> Store:
    store.add(
        obs("mg", valueQuantity={"value": 5.4, "unit": "mg", "system": UCUM, "code": "mg"}),
        obs("lb", valueQuantity={"value": 185, "unit": "lbs", "system": UCUM, "code": "[lb_av]"}),
        obs("kg", valueQuantity={"value": 83.9, "unit": "kg", "system": UCUM, "code": "kg"}),
        obs("lt", valueQuantity={"value": 5, "comparator": "<", "system": UCUM, "code": "mg"}),
        obs(
            "local",
            valueQuantity={"value": 5.4, "unit": "tablet", "system": "urn:units", "code": "tab"},
        ),
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": "Patient/x"},
            "onsetRange": {
                "low": {"value": 10, "system": UCUM, "code": "a"},
                "high": {"value": 20, "system": UCUM, "code": "a"},
            },
        },
        {
            "resourceType": "ChargeItem",
            "id": "ci1",
            "status": "billed",
            "code": code("x"),
            "subject": {"reference": "Patient/x"},
            "priceOverride": {"value": 40, "currency": "EUR"},
        },
    )
    return store


@pytest.mark.parametrize(
    ("res_type", "query", "expected"),
    [
        ("Observation", "value-quantity=5.4", {"mg", "local"}),
        ("Observation", "value-quantity=5.4||mg", {"mg"}),
        ("Observation", "value-quantity=5.4||tablet", {"local"}),
        ("Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg", {"mg"}),
        ("Observation", "value-quantity=5.4|urn:units|tab", {"local"}),
        ("Observation", "value-quantity=0.0054|http://unitsofmeasure.org|g", {"mg"}),
        ("Observation", "value-quantity=5400|http://unitsofmeasure.org|ug", {"mg"}),
        ("Observation", "value-quantity=gt5|http://unitsofmeasure.org|mg", {"mg", "lb", "kg"}),
        ("Observation", "value-quantity=lt5|http://unitsofmeasure.org|mg", {"lt"}),
        ("Observation", "value-quantity=lt4|http://unitsofmeasure.org|mg", {"lt"}),
        ("Observation", "value-quantity=ge6|http://unitsofmeasure.org|mg", {"lb", "kg"}),
        # 185 lb ± 0.5 lb holds 83.9 kg (184.97 lb), and 83.9 kg ± 0.05 kg holds 185 lb
        ("Observation", "value-quantity=185|http://unitsofmeasure.org|[lb_av]", {"lb", "kg"}),
        ("Observation", "value-quantity=185.00|http://unitsofmeasure.org|[lb_av]", {"lb"}),
        ("Observation", "value-quantity=83.9|http://unitsofmeasure.org|kg", {"lb", "kg"}),
        ("Observation", "value-quantity=83.90|http://unitsofmeasure.org|kg", {"kg"}),
        ("Observation", "value-quantity=ap84|http://unitsofmeasure.org|kg", {"lb", "kg"}),
        ("Observation", "value-quantity=gt80000|http://unitsofmeasure.org|g", {"lb", "kg"}),
        ("Condition", "onset-age=15|http://unitsofmeasure.org|a", set()),
        ("Condition", "onset-age=ge15|http://unitsofmeasure.org|a", {"c1"}),
        ("Condition", "onset-age=lt12", {"c1"}),
        ("Condition", "onset-age=gt20", set()),
        ("ChargeItem", "price-override=40|urn:iso:std:iso:4217|EUR", {"ci1"}),
        ("ChargeItem", "price-override=40|urn:iso:std:iso:4217|USD", set()),
    ],
)
def test_quantity(measured: Store, res_type: str, query: str, expected: set[str]) -> None:
    assert measured.ids(res_type, query) == expected


# -- uri, _profile, _source, _tag, _security, _id ---------------------------------------------
@pytest.fixture
def canonical(store: Store) -> Store:
    def vs(vid: str, url: str, **kw: object) -> dict:
        return {"resourceType": "ValueSet", "id": vid, "status": "active", "url": url, **kw}

    store.add(
        vs(
            "v1",
            "http://acme.org/fhir/ValueSet/123",
            meta={
                "profile": ["http://hl7.org/fhir/StructureDefinition/shareablevalueset"],
                "source": "http://acme.org/source#a",
                "tag": [{"system": "urn:tags", "code": "t1"}],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
            },
        ),
        vs(
            "v2",
            "http://acme.org/fhir/ValueSet/124",
            meta={"tag": [{"system": "urn:tags", "code": "t2"}]},
        ),
        vs("v3", "http://acme.org/fhir"),
        patient("pt", meta={"tag": [{"system": "urn:tags", "code": "t1"}]}),
    )
    return store


@pytest.mark.parametrize(
    ("res_type", "query", "expected"),
    [
        ("ValueSet", "url=http://acme.org/fhir/ValueSet/123", {"v1"}),
        ("ValueSet", "url=http://acme.org/fhir/ValueSet", set()),
        ("ValueSet", "url:below=http://acme.org/fhir/ValueSet", {"v1", "v2"}),
        ("ValueSet", "url:below=http://acme.org/fhir", {"v1", "v2", "v3"}),
        ("ValueSet", "url:above=http://acme.org/fhir/ValueSet/123/_history/5", {"v1", "v3"}),
        ("ValueSet", "url:missing=false", {"v1", "v2", "v3"}),
        ("ValueSet", "_profile=http://hl7.org/fhir/StructureDefinition/shareablevalueset", {"v1"}),
        ("ValueSet", "_source=http://acme.org/source#a", {"v1"}),
        ("ValueSet", "_tag=urn:tags|t1", {"v1"}),
        ("ValueSet", "_tag=t1,t2", {"v1", "v2"}),
        ("ValueSet", "_tag:not=t1", {"v2", "v3"}),
        ("ValueSet", "_security=R", {"v1"}),
        ("ValueSet", "_id=v1,v3", {"v1", "v3"}),
        ("ValueSet", "_id=v1&_id=v3", set()),
        ("Patient", "_tag=t1", {"pt"}),
    ],
)
def test_uri_and_common_parameters(
    canonical: Store, res_type: str, query: str, expected: set[str]
) -> None:
    assert canonical.ids(res_type, query) == expected


def test_system_search(canonical: Store) -> None:
    assert canonical.ids(None, "_tag=urn:tags|t1") == {"ValueSet/v1", "Patient/pt"}
    assert canonical.ids(None, "_type=Patient&_tag=t1") == {"Patient/pt"}
    assert canonical.ids(None, "_type=Patient,ValueSet&_id=pt,v2") == {"Patient/pt", "ValueSet/v2"}
    assert canonical.ids(None, "_type=ValueSet&url:below=http://acme.org/fhir/") == {
        "ValueSet/v1",
        "ValueSet/v2",
    }
    compiled = canonical.search.compile(None, [("url", "x")])
    assert [u.name for u in compiled.unsupported] == ["url"]
    with pytest.raises(Invalid):
        canonical.search.compile(None, [("_type", "Nonsense")])


# -- composite ---------------------------------------------------------------------------------
def bp(oid: str, systolic: float, diastolic: float) -> dict:
    def comp(c: str, v: float) -> dict:
        return {
            "code": code(c),
            "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    return obs(
        oid, code=code("85354-9"), component=[comp("8480-6", systolic), comp("8462-4", diastolic)]
    )


@pytest.fixture
def panels(store: Store) -> Store:
    store.add(
        bp("a", 120, 80),
        bp("b", 80, 120),
        obs(
            "c",
            code=code("1234-5"),
            valueCodeableConcept=code("123", system="http://snomed.info/sct"),
        ),
        obs("d", code=code("1234-5"), valueDateTime="2020-06-01"),
        obs("e", code=code("1234-5"), valueString="Positive result"),
        obs("f", code=code("2345-6"), valueQuantity={"value": 7, "system": UCUM, "code": "mmol/L"}),
    )
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("component-code-value-quantity=http://loinc.org|8480-6$gt100", {"a"}),
        ("component-code-value-quantity=8480-6$gt100", {"a"}),
        ("component-code-value-quantity=8462-4$gt100", {"b"}),
        ("component-code-value-quantity=8480-6$120|http://unitsofmeasure.org|mm[Hg]", {"a"}),
        ("component-code-value-quantity=8480-6$120||mm[Hg]", {"a"}),
        ("component-code-value-quantity=8480-6$120|http://unitsofmeasure.org|mg", set()),
        ("component-code-value-quantity=8480-6$gt100,8462-4$gt100", {"a", "b"}),
        ("combo-code-value-quantity=8462-4$80", {"a"}),
        ("combo-code-value-quantity=2345-6$le7", {"f"}),
        ("code-value-quantity=2345-6$7", {"f"}),
        ("code-value-concept=http://loinc.org|1234-5$http://snomed.info/sct|123", {"c"}),
        ("code-value-concept=1234-5$123", {"c"}),
        ("code-value-concept=1234-5$124", set()),
        ("code-value-date=1234-5$ge2020", {"d"}),
        ("code-value-date=1234-5$lt2020", set()),
        ("code-value-string=1234-5$positive", {"e"}),
        ("code-value-string=1234-5$negative", set()),
        # the same two criteria without the composite match across components
        ("component-code=8480-6&component-value-quantity=gt100", {"a", "b"}),
    ],
)
def test_composite(panels: Store, query: str, expected: set[str]) -> None:
    assert panels.ids("Observation", query) == expected


def test_composite_needs_all_parts(panels: Store) -> None:
    with pytest.raises(Invalid):
        panels.ids("Observation", "component-code-value-quantity=8480-6")


# -- missing, unknown, errors, deleted ---------------------------------------------------------
def test_missing(store: Store) -> None:
    store.add(patient("with", birthDate="1970", gender="male"), patient("without"))
    assert store.ids("Patient", "birthdate:missing=true") == {"without"}
    assert store.ids("Patient", "birthdate:missing=false") == {"with"}
    assert store.ids("Patient", "gender:missing=true&birthdate:missing=true") == {"without"}
    with pytest.raises(Invalid):
        store.ids("Patient", "gender:missing=maybe")


def test_unknown_parameters_are_reported_not_applied(store: Store) -> None:
    store.add(patient("a", gender="male"))
    compiled = store.search.compile(
        "Patient",
        [
            ("gender", "male"),
            ("foo", "1"),
            ("gender:bogus", "x"),
            ("_text", "x"),
            ("_content", "y"),
            ("_filter", "z"),
        ],
    )
    assert [u.name for u in compiled.unsupported] == [
        "foo",
        "gender:bogus",
        "_text",
        "_content",
        "_filter",
    ]
    assert [r[0] for r in store.conn.execute(compiled.select)] != []
    with pytest.raises(Invalid, match="foo"):
        store.search.match("Patient", [("gender", "male"), ("foo", "1")])
    with pytest.raises(NotSupported):
        store.ids("Location", "near=42.25|-83.69|10|km")
    with pytest.raises(Invalid):
        store.search.compile("Nonsense", [])


def test_empty_values_are_ignored_and_deleted_resources_never_match(store: Store) -> None:
    store.add(patient("alive", gender="male"), patient("gone", gender="male"))
    store.conn.execute(sa.update(resource).where(resource.c.res_id == "gone").values(deleted=True))
    assert store.ids("Patient", "gender=") == {"alive"}
    assert store.ids("Patient", "_id=gone") == set()


# -- _sort -------------------------------------------------------------------------------------
def test_sort(store: Store) -> None:
    store.add(
        patient("a", birthDate="1980-05-01", name=[{"family": "Zeta"}]),
        patient("b", birthDate="1970", name=[{"family": "Alpha"}]),
        patient("c", name=[{"family": "Alpha"}]),
        patient("d", birthDate="1990-01-01", name=[{"family": "Mu"}, {"family": "Beta"}]),
    )
    assert store.sorted_ids("Patient", "", "birthdate") == ["b", "a", "d", "c"]
    assert store.sorted_ids("Patient", "", "-birthdate") == ["d", "a", "b", "c"]
    assert store.sorted_ids("Patient", "", "family,-birthdate") == ["b", "c", "d", "a"]
    assert store.sorted_ids("Patient", "", "-family,_id") == ["a", "d", "b", "c"]
    assert store.sorted_ids("Patient", "", "-_id") == ["d", "c", "b", "a"]
    assert store.sorted_ids("Patient", "", "_lastUpdated") == ["a", "b", "c", "d"]
    assert store.sorted_ids("Patient", "family=alpha", "-_lastUpdated") == ["c", "b"]
    with pytest.raises(Invalid):
        store.search.sort_by("Patient", "nonsense")


# -- writing and deleting index rows -----------------------------------------------------------
def test_index_and_unindex(store: Store) -> None:
    """``SearchEngine.index`` (one statement per table on PostgreSQL) writes the same rows as
    ``rows_for``; ``unindex`` removes them all."""
    from resources.search import INDEX_TABLES

    docs = [bp("w1", 120, 80), patient("w2", name=[{"family": "Writer"}], birthDate="1970")]
    pks = [
        store.conn.execute(
            sa.insert(resource)
            .values(
                res_type=d["resourceType"],
                res_id=d["id"],
                version=1,
                last_updated=datetime(2024, 1, 1, tzinfo=UTC),
                deleted=False,
                content=d,
            )
            .returning(resource.c.pk)
        ).scalar_one()
        for d in docs
    ]
    written = store.search.index(store.conn, zip(pks, docs, strict=True))
    assert written == sum(len(store.search.rows_for(d)) for d in docs)
    assert store.ids("Observation", "component-code-value-quantity=8480-6$120") == {"w1"}
    assert store.ids("Patient", "family=writ&birthdate=1970") == {"w2"}

    def count() -> int:
        return sum(
            store.conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.res_pk.in_(pks))
            ).scalar_one()
            for t in INDEX_TABLES
        )

    assert count() == written
    store.search.unindex(store.conn, pks)
    assert count() == 0
    assert store.ids("Patient", "family=writ") == set()


def test_index_writes_every_value_exactly(store: Store, examples: list[dict]) -> None:
    """What ``index`` stores (COPY on PostgreSQL, executemany on SQLite) is, column for column,
    what ``rows_for`` computed, for every index row of the 604 R4 examples (texts with quotes,
    tabs and non-ASCII, 64-bit keys, open-ended ranges, NULLs)."""
    from resources.search import INDEX_TABLES
    from resources.search.tables import COLUMNS

    pks = [
        store.conn.execute(
            sa.insert(resource)
            .values(
                res_type=d["resourceType"],
                res_id=d["id"],
                version=1,
                last_updated=datetime(2024, 1, 1, tzinfo=UTC),
                deleted=False,
                content=d,
            )
            .returning(resource.c.pk)
        ).scalar_one()
        for d in examples
    ]
    store.search.index(store.conn, zip(pks, examples, strict=True))
    for table in INDEX_TABLES:
        cols = COLUMNS[table]
        want = Counter(
            (tuple(row[c] for c in cols if c != "res_pk") + (pk,))
            for pk, doc in zip(pks, examples, strict=True)
            for t, row in store.search.rows_for(doc)
            if t is table
        )
        got = Counter(
            tuple(r)
            for r in store.conn.execute(
                sa.select(*(table.c[c] for c in cols if c != "res_pk"), table.c.res_pk)
            )
        )
        assert want and got == want, table.name


def test_matching_contained_picks_the_contained_resources_that_match(
    search: SearchEngine,
) -> None:
    """``_containedType=contained``: of each container's contained resources of the type, only
    those the criteria match (resources/search/contained_match.py)."""

    def person(pid: str, family: str, gender: str) -> dict:
        return {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": family}],
            "gender": gender,
        }

    containers = [
        (
            "Observation",
            "o1",
            {"contained": [person("a", "Lee", "female"), person("b", "Kim", "male")]},
        ),
        ("Observation", "o2", {"contained": [person("c", "Leeds", "male")]}),
        ("Observation", "o3", {"contained": [{"resourceType": "Practitioner", "id": "d"}]}),
    ]
    found = matching_contained(search, "Patient", [("family", "lee")], containers)
    assert [(m.container_id, m.resource["id"]) for m in found] == [("o1", "a"), ("o2", "c")]
    assert found[0].full_url("http://x/fhir") == "http://x/fhir/Observation/o1#a"
    found = matching_contained(
        search, "Patient", [("family", "lee"), ("gender", "male")], containers
    )
    assert [m.resource["id"] for m in found] == ["c"]
    assert matching_contained(search, "Patient", [("family", "zz")], containers) == []
