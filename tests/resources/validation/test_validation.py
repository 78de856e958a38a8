"""Tests for resources.validation: FHIR R4 validation of one resource (json.html, datatypes.html)."""

from __future__ import annotations

import copy
import gzip
import json
import time
import types
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resources.errors import Issue
from resources.validation import is_resource_type, resource_types, validate_resource
from resources.validation import r4b as validation_r4b
from resources.validation.schema import NON_R4_ELEMENTS, RESOURCE_TYPES_FILE, SCHEMA_FILE, schema
from tests.shared import json_places, shared_path

EXAMPLES = shared_path("fhir", "r4-examples")
DEFINITIONS = shared_path("fhir", "r4-definitions")
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))

# Official examples that are not valid R4. Questionnaire.item.linkId is 1..1 in R4 (and R4B); this
# generated example leaves it out of every "display" item. Not an R4/R4B difference.
KNOWN_INVALID = {"examplescenario-questionnaire.json"}

R4_ONLY_TYPES = {
    "EffectEvidenceSynthesis",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "RiskEvidenceSynthesis",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
}
CODES = {"structure", "required", "value", "invalid"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def errors(resource: Any) -> list[Issue]:
    return [i for i in validate_resource(resource) if i.severity == "error"]


# -- the official examples --------------------------------------------------------------------


def test_there_are_604_examples() -> None:
    assert len(EXAMPLE_FILES) == 604


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_official_example_is_valid(path: Path) -> None:
    resource = load(path)
    found = errors(resource)
    if path.name in KNOWN_INVALID:
        # exactly one "required" issue per item without a linkId, nothing else
        missing = sorted(_items_without_link_id(resource["item"], "Questionnaire.item"))
        assert missing and sorted(i.expression[0] for i in found) == missing
        assert {i.code for i in found} == {"required"}
    else:
        assert found == []


def _items_without_link_id(items: list, at: str) -> list[str]:
    out = []
    for index, item in enumerate(items):
        here = f"{at}[{index}]"
        if "linkId" not in item:
            out.append(f"{here}.linkId")
        out.extend(_items_without_link_id(item.get("item", []), f"{here}.item"))
    return out


def test_examples_cover_the_r4_only_types() -> None:
    kinds = {load(p)["resourceType"] for p in EXAMPLE_FILES}
    assert (
        len(kinds & R4_ONLY_TYPES) == 13
    )  # 10 MedicinalProduct*, 2 *EvidenceSynthesis, 1 Substance*


# -- bad input: one issue, with its code and location -----------------------------------------

PATIENT = {"resourceType": "Patient"}
OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "glucose"}}
BAD = [
    ("unknown element", {**PATIENT, "foo": 1}, "structure", "Patient.foo"),
    ("wrong JSON type", {**PATIENT, "active": "yes"}, "structure", "Patient.active"),
    ("number for boolean", {**PATIENT, "active": 1}, "structure", "Patient.active"),
    ("object for array", {**PATIENT, "name": {"family": "Doe"}}, "structure", "Patient.name"),
    (
        "array for single complex",
        {**PATIENT, "meta": [{"versionId": "1"}]},
        "structure",
        "Patient.meta",
    ),
    ("array of null for meta", {**PATIENT, "meta": [None]}, "structure", "Patient.meta"),
    (
        "array for primitive extension",
        {**PATIENT, "_birthDate": [{"id": "a"}]},
        "structure",
        "Patient._birthDate",
    ),
    (
        "fractional integer",
        {**PATIENT, "multipleBirthInteger": 1.5},
        "structure",
        "Patient.multipleBirthInteger",
    ),
    ("bad date format", {**PATIENT, "birthDate": "1990-13-45"}, "value", "Patient.birthDate"),
    ("impossible date", {**PATIENT, "birthDate": "1990-02-30"}, "value", "Patient.birthDate"),
    (
        "dateTime without zone",
        {**OBSERVATION, "effectiveDateTime": "2020-01-01T10:00:00"},
        "value",
        "Observation.effectiveDateTime",
    ),
    ("bad code", {**PATIENT, "gender": "woman"}, "value", "Patient.gender"),
    (
        "missing status",
        {"resourceType": "Observation", "code": {"text": "x"}},
        "required",
        "Observation.status",
    ),
    (
        "missing code",
        {"resourceType": "Observation", "status": "final"},
        "required",
        "Observation.code",
    ),
    (
        "missing nested code",
        {**OBSERVATION, "component": [{"valueString": "x"}]},
        "required",
        "Observation.component[0].code",
    ),
    (
        "missing choice",
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/1"},
        },
        "required",
        "MedicationRequest.medication[x]",
    ),
    (
        "two choice values",
        {**PATIENT, "deceasedBoolean": True, "deceasedDateTime": "2020"},
        "invalid",
        "Patient.deceased[x]",
    ),
    ("bad id", {**PATIENT, "id": "a b"}, "value", "Patient.id"),
    ("id too long", {**PATIENT, "id": "x" * 65}, "value", "Patient.id"),
    ("empty string", {**PATIENT, "gender": ""}, "value", "Patient.gender"),
    ("empty uri", {**PATIENT, "implicitRules": ""}, "value", "Patient.implicitRules"),
    ("empty array", {**PATIENT, "name": []}, "structure", "Patient.name"),
    ("empty object", {**PATIENT, "name": [{}]}, "structure", "Patient.name[0]"),
    ("null value", {**PATIENT, "gender": None}, "structure", "Patient.gender"),
    (
        "unaligned null",
        {**PATIENT, "name": [{"given": ["Ann", None]}]},
        "structure",
        "Patient.name[0].given[1]",
    ),
    ("unknown resourceType", {"resourceType": "Foo"}, "invalid", "resourceType"),
    ("R4B-only resourceType", {"resourceType": "SubscriptionStatus"}, "invalid", "resourceType"),
    ("missing resourceType", {"id": "x"}, "required", "resourceType"),
    (
        "R4-only type, bad element",
        {"resourceType": "MedicinalProduct", "name": [{"productName": 5}]},
        "structure",
        "MedicinalProduct.name[0].productName",
    ),
    (
        "R4-only type, unknown element",
        {"resourceType": "MedicinalProduct", "name": [{"productName": "x"}], "foo": 1},
        "structure",
        "MedicinalProduct.foo",
    ),
    (
        "R4-only type, missing element",
        {"resourceType": "MedicinalProduct"},
        "required",
        "MedicinalProduct.name",
    ),
    (
        "R4B-only element",
        {**PATIENT, "extension": [{"url": "http://x", "valueRatioRange": {"text": "x"}}]},
        "structure",
        "Patient.extension[0].valueRatioRange",
    ),
    (
        "R4B-only choice",
        {"resourceType": "ActivityDefinition", "status": "draft", "subjectCanonical": "http://x"},
        "structure",
        "ActivityDefinition.subjectCanonical",
    ),
    (
        "two R4 values, choice differs in R4B",
        {
            "resourceType": "ActivityDefinition",
            "status": "draft",
            "subjectCodeableConcept": {"text": "x"},
            "subjectReference": {"reference": "Group/1"},
        },
        "invalid",
        "ActivityDefinition.subject[x]",
    ),
    (
        "one R4 value and one R4B-only value",
        {
            "resourceType": "ActivityDefinition",
            "status": "draft",
            "subjectCodeableConcept": {"text": "x"},
            "subjectCanonical": "http://x",
        },
        "structure",
        "ActivityDefinition.subjectCanonical",
    ),
    (
        "redistributor's element",
        {**PATIENT, "meta": {"project": "p1"}},
        "structure",
        "Patient.meta.project",
    ),
    (
        "contained, bad element",
        {**PATIENT, "contained": [{"resourceType": "Organization", "active": "no"}]},
        "structure",
        "Patient.contained[0].active",
    ),
    (
        "contained, impossible date",
        {**PATIENT, "contained": [{"resourceType": "Patient", "birthDate": "2021-02-29"}]},
        "value",
        "Patient.contained[0].birthDate",
    ),
    (
        "contained, bad id",
        {**PATIENT, "contained": [{"resourceType": "Patient", "id": "#1"}]},
        "value",
        "Patient.contained[0].id",
    ),
    (
        "contained R4-only type",
        {
            **PATIENT,
            "contained": [{"resourceType": "MedicinalProduct", "name": [{"productName": 5}]}],
        },
        "structure",
        "Patient.contained[0].name[0].productName",
    ),
    (
        "entry of unknown type",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Foo"}}],
        },
        "invalid",
        "Bundle.entry[0].resource.resourceType",
    ),
    (
        "entry without type",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "1"}}]},
        "required",
        "Bundle.entry[0].resource.resourceType",
    ),
    (
        "entry, missing status",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Observation", "code": {"text": "x"}}}],
        },
        "required",
        "Bundle.entry[0].resource.status",
    ),
    (
        "resourceType inside a datatype",
        {**PATIENT, "name": [{"resourceType": "Patient", "family": "X"}]},
        "structure",
        "Patient.name[0].resourceType",
    ),
]


@pytest.mark.parametrize(
    ("resource", "code", "where"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_resource_gets_one_issue(resource: dict, code: str, where: str) -> None:
    found = errors(resource)
    assert [(i.code, i.expression) for i in found] == [(code, (where,))], found
    assert where in found[0].diagnostics or where == "resourceType"


@pytest.mark.parametrize("value", [None, [], ["Patient"], "Patient", 5, True], ids=repr)
def test_non_object_input_is_one_structure_issue(value: Any) -> None:
    found = errors(value)
    assert [i.code for i in found] == ["structure"]


def test_diagnostics_say_what_was_expected() -> None:
    (active,) = errors({**PATIENT, "active": "yes"})
    assert "boolean" in active.diagnostics and "'yes'" in active.diagnostics
    (gender,) = errors({**PATIENT, "gender": "woman"})
    assert "male, female, other, unknown" in gender.diagnostics
    (birth,) = errors({**PATIENT, "birthDate": "1990-13-45"})
    assert "YYYY-MM-DD" in birth.diagnostics


def test_all_issues_are_reported_not_only_the_first() -> None:
    resource = {**PATIENT, "active": "yes", "gender": "woman", "foo": 1, "bar": 2, "name": []}
    found = {i.expression[0]: i.code for i in errors(resource)}
    assert found == {
        "Patient.active": "structure",
        "Patient.gender": "value",
        "Patient.foo": "structure",
        "Patient.bar": "structure",
        "Patient.name": "structure",
    }


def test_issue_renders_as_operation_outcome_issue() -> None:
    (issue,) = errors({**PATIENT, "foo": 1})
    assert issue.to_fhir() == {
        "severity": "error",
        "code": "structure",
        "diagnostics": issue.diagnostics,
        "expression": ["Patient.foo"],
    }


# -- what is valid R4 stays valid ---------------------------------------------------------------

GOOD = [
    (
        "null aligned with an extension",
        {
            **PATIENT,
            "name": [
                {
                    "given": ["Ann", None],
                    "_given": [None, {"extension": [{"url": "http://x", "valueString": "y"}]}],
                }
            ],
        },
    ),
    (
        "extension on a primitive only",
        {**PATIENT, "_birthDate": {"extension": [{"url": "http://x", "valueCode": "unknown"}]}},
    ),
    (
        "extension on a canonical",
        {
            "resourceType": "Questionnaire",
            "status": "draft",
            "derivedFrom": ["http://x/q"],
            "_derivedFrom": [{"extension": [{"url": "http://x", "valueString": "y"}]}],
        },
    ),
    ("non-breaking space in a string", {**PATIENT, "name": [{"text": "Ann\u00a0Lee"}]}),
    (
        "R4 Extension.valueMeta (not in R4B)",
        {**PATIENT, "extension": [{"url": "http://x", "valueMeta": {"versionId": "1"}}]},
    ),
    (
        "R4 Evidence (redesigned in R4B)",
        {
            "resourceType": "Evidence",
            "status": "draft",
            "name": "E",
            "exposureBackground": {"reference": "Group/1"},
        },
    ),
    (
        "R4 EvidenceVariable.characteristic",
        {
            "resourceType": "EvidenceVariable",
            "status": "draft",
            "characteristic": [
                {
                    "definitionDataRequirement": {"type": "Patient"},
                    "participantEffectiveDateTime": "2020",
                }
            ],
        },
    ),
    (
        "R4 Timing.repeat.modifierExtension (schema)",
        {
            **OBSERVATION,
            "effectiveTiming": {
                "repeat": {
                    "frequency": 1,
                    "modifierExtension": [{"url": "http://x", "valueBoolean": True}],
                }
            },
        },
    ),
    (
        "R4-only type nested in a Bundle",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": load(EXAMPLES / "medicinalproduct-example.json")}],
        },
    ),
    (
        "Parameters with a resource",
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "p", "resource": {**PATIENT, "active": True}}],
        },
    ),
    ("integer limits", {**PATIENT, "multipleBirthInteger": 2147483647}),
]


@pytest.mark.parametrize("resource", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_valid_r4_is_accepted(resource: dict) -> None:
    assert errors(resource) == []


def test_integer_beyond_32_bits_is_rejected() -> None:
    found = errors({**PATIENT, "multipleBirthInteger": 2147483648})
    assert [(i.code, i.expression) for i in found] == [("value", ("Patient.multipleBirthInteger",))]


def test_long_bad_base64_is_rejected_quickly() -> None:
    # the published base64Binary pattern backtracks exponentially on this; ours is linear
    data = "QUJD " * 5000 + "!"
    started = time.perf_counter()
    found = errors({"resourceType": "Binary", "contentType": "text/plain", "data": data})
    assert time.perf_counter() - started < 2
    assert [(i.code, i.expression) for i in found] == [("value", ("Binary.data",))]


def test_r4b_model_crash_becomes_an_issue() -> None:
    # fhir.resources raises KeyError for an unknown nested type; validate_resource masks such
    # resources first, and validation_r4b.check still turns the crash into an issue
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Foo"}}],
    }
    found = validation_r4b.check(bundle, "Bundle", schema(), masked=[])
    assert [(i.code, i.expression) for i in found] == [("invalid", ("Bundle",))]
    assert validation_r4b.check(bundle, "Bundle", schema(), masked=[("entry", 0, "resource")]) == []


def test_r4b_findings_on_divergent_elements_are_dropped() -> None:
    # R4B requires Evidence.variableDefinition (an R4B element) and forbids the R4 elements
    evidence = {
        "resourceType": "Evidence",
        "status": "draft",
        "exposureBackground": {"reference": "Group/1"},
    }
    model = validation_r4b.model("Evidence")
    with pytest.raises(pydantic.ValidationError) as raised:
        model.model_validate(evidence)
    assert {e["type"] for e in raised.value.errors()} >= {"missing", "extra_forbidden"}
    assert validation_r4b.check(evidence, "Evidence", schema(), masked=[]) == []


def test_missing_choice_is_not_reported_where_r4_offers_more_types() -> None:
    # fhir.resources reports a missing choice value only once the object's fields are valid; the
    # rule still has to hold if it reported it alongside the unknown R4 type (valueMeta)
    check = validation_r4b._choice_issue
    extension = {**PATIENT, "extension": [{"url": "http://x", "valueMeta": {"versionId": "1"}}]}
    names = ["valueString", "valueBoolean", "valueRatioRange"]
    assert check(names, False, extension, "Patient", ("extension", 0), schema()) is None
    request = {"resourceType": "MedicationRequest", "status": "active", "intent": "order"}
    names = ["medicationCodeableConcept", "medicationReference"]
    issue = check(names, False, request, "MedicationRequest", (), schema())
    assert issue is not None and issue.expression == ("MedicationRequest.medication[x]",)


# -- resource types -------------------------------------------------------------------------------


def test_resource_types() -> None:
    kinds = resource_types()
    assert len(kinds) == 146
    assert {
        "Patient",
        "Observation",
        "Bundle",
        "MedicinalProduct",
        "SubstanceSpecification",
    } <= kinds
    assert not kinds & {"SubscriptionStatus", "Resource", "DomainResource", "Project", "Bot"}
    assert is_resource_type("Patient") and not is_resource_type("patient")
    assert not is_resource_type("SubscriptionStatus")


def test_types_without_an_r4b_model_are_the_r4_only_ones() -> None:
    assert {t for t in resource_types() if validation_r4b.model(t) is None} == R4_ONLY_TYPES


# -- the data files and the R4/R4B table stay true to their sources --------------------------------


def test_schema_file_is_the_shared_schema() -> None:
    shipped = gzip.decompress(SCHEMA_FILE.read_bytes())
    assert shipped == (DEFINITIONS / "fhir.schema.json").read_bytes()


def test_resource_type_list_is_the_r4_code_system() -> None:
    bundle = json.loads(gzip.decompress((DEFINITIONS / "valuesets.json.gz").read_bytes()))
    (system,) = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "CodeSystem"
        and e["resource"].get("url") == "http://hl7.org/fhir/resource-types"
    ]
    assert system["version"] == "4.0.1"
    codes = {c["code"] for c in system["concept"]} - {"Resource", "DomainResource"}
    shipped = {
        line
        for line in RESOURCE_TYPES_FILE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert shipped == codes


def test_non_r4_elements_are_in_the_copy_and_not_in_r4b() -> None:
    raw = json.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))
    for definition, element in NON_R4_ELEMENTS:
        assert element in raw["definitions"][definition]["properties"]
        model = validation_r4b.model(definition)
        if model is not None:
            assert element not in {f.alias or n for n, f in model.model_fields.items()}
        assert element not in schema().elements(definition)


def test_divergence_table_matches_the_installed_r4b_models() -> None:
    assert _divergence() == validation_r4b.DIVERGENT


_R4B_PRIMITIVE = {"bool": "boolean", "EncodedBytes": "base64Binary", "UuidVersion": "uuid"}
_SAME_JSON = {"markdown": "string", "id": "string", "code": "string"}
_SAME_JSON |= {"url": "uri", "canonical": "uri", "oid": "uri", "uuid": "uri"}


def _divergence() -> dict[tuple[str, str], str]:
    """Compare every R4 definition reachable from a type with an R4B model, element by element:
    name, JSON array or not, type, and minimum cardinality (from the R4 StructureDefinitions for
    primitives and choice elements, which the JSON Schema cannot mark required)."""
    r4 = schema()
    minimum = _r4_minimums()
    found: dict[tuple[str, str], str] = {}
    seen: set[str] = set()

    def pair(definition: str, cls: Any, sd_path: str) -> None:
        if definition in seen:
            return
        seen.add(definition)
        specs = r4.elements(definition)
        fields = {
            f.alias or n: f
            for n, f in cls.model_fields.items()
            if (f.json_schema_extra or {}).get("element_property")
        }
        required = set(r4.required(definition))
        for key, spec in specs.items():
            if key.startswith("_") or key == "resourceType":
                continue
            field = fields.get(key)
            if field is None:
                found[(definition, key)] = "not in R4B"
                continue
            state = {"array": False}
            r4b_type = _r4b_type(field.annotation, state)
            if state["array"] != spec.array:
                found[(definition, key)] = "cardinality differs"
            if isinstance(r4b_type, str):
                same = _SAME_JSON.get(spec.type, spec.type) == _SAME_JSON.get(r4b_type, r4b_type)
                if not spec.primitive or not same:
                    found[(definition, key)] = f"type differs: R4 {spec.type}, R4B {r4b_type}"
            elif spec.type == "Resource":
                if r4b_type.__name__ != "Resource":
                    found[(definition, key)] = f"type differs: R4 Resource, R4B {r4b_type.__name__}"
            elif spec.primitive or ("_" not in spec.type and spec.type != r4b_type.__name__):
                found[(definition, key)] = f"type differs: R4 {spec.type}, R4B {r4b_type.__name__}"
            else:
                pair(spec.type, r4b_type, f"{sd_path}.{key}" if "_" in spec.type else spec.type)
            extra = field.json_schema_extra or {}
            choice = extra.get("one_of_many")
            label = f"{choice}[x]" if choice else key
            r4b_required = (
                bool(extra.get("one_of_many_required"))
                if choice
                else field.is_required() or bool(extra.get("element_required"))
            )
            if choice or spec.primitive:
                # the shared StructureDefinitions are not pure R4 everywhere: no path, no verdict
                r4_min = minimum.get(f"{sd_path}.{label}")
                r4_required = r4b_required if r4_min is None else r4_min > 0
            else:
                r4_required = key in required
            if r4_required != r4b_required:
                found.setdefault(
                    (definition, label),
                    f"cardinality differs: R4 {int(r4_required)}.., R4B {int(r4b_required)}..",
                )
        for alias in fields:
            if alias not in specs:
                found[(definition, alias)] = "not in R4"

    for kind in sorted(r4.resource_types):
        cls = validation_r4b.model(kind)
        if cls is not None:
            pair(kind, cls, kind)
    return found


def _r4b_type(annotation: Any, state: dict) -> Any:
    """The R4B type of a field: a primitive's R4 name, or the model class."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _r4b_type(next(a for a in typing.get_args(annotation) if a is not type(None)), state)
    if origin is list:
        state["array"] = True
        return _r4b_type(typing.get_args(annotation)[0], state)
    if origin is typing.Annotated:
        name = type(typing.get_args(annotation)[1]).__name__
    elif hasattr(annotation, "get_model_klass"):
        return annotation.get_model_klass()
    else:
        name = annotation.__name__
    return _R4B_PRIMITIVE.get(name, name[0].lower() + name[1:])


def _r4_minimums() -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("profiles-resources.json.gz", "profiles-types.json"):
        raw = (DEFINITIONS / name).read_bytes()
        bundle = json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if (
                sd.get("resourceType") == "StructureDefinition"
                and sd.get("derivation") != "constraint"
            ):
                for element in sd.get("snapshot", {}).get("element", []):
                    out[element["path"]] = element.get("min", 0)
    return out


# -- never raises ---------------------------------------------------------------------------------

SAMPLES = [
    load(EXAMPLES / name)
    for name in (
        "patient-example.json",
        "observation-example-bloodpressure.json",
        "bundle-example.json",
        "careplan-example-integrated.json",
        "questionnaireresponse-example.json",
        "medicinalproduct-example.json",
        "parameters-example.json",
        "structuredefinition-example-composition.json",
    )
]
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
TYPE_NAMES = st.sampled_from(
    ["Patient", "Bundle", "MedicinalProduct", "Observation", "Foo", "SubscriptionStatus", ""]
)


@st.composite
def mutated_resources(draw: st.DrawFn) -> Any:
    resource = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        places = json_places(resource)
        if not places:
            break
        container, key = places[draw(st.integers(0, len(places) - 1))]
        action = draw(
            st.sampled_from(["replace", "delete", "null", "empty", "add", "retype", "wrap"])
        )
        if action == "replace":
            container[key] = draw(JSON_VALUE)
        elif action == "delete":
            del container[key]
        elif action == "null":
            container[key] = None
        elif action == "empty":
            container[key] = draw(st.sampled_from(["", [], {}]))
        elif action == "add" and isinstance(container, dict):
            container[draw(st.text(max_size=12))] = draw(JSON_VALUE)
        elif action == "retype":
            target = container[key]
            if isinstance(target, dict):
                target["resourceType"] = draw(TYPE_NAMES)
        elif action == "wrap":
            container[key] = [container[key]]
    if draw(st.booleans()):
        return resource
    return draw(
        st.sampled_from([resource, [resource], {"resourceType": draw(TYPE_NAMES), **resource}])
    )


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_resources())
def test_validation_never_raises(resource: Any) -> None:
    before = copy.deepcopy(resource)
    issues = validate_resource(resource)
    assert all(isinstance(i, Issue) and i.code in CODES for i in issues)
    assert all(i.severity == "error" for i in issues)
    assert resource == before  # the input is never modified
