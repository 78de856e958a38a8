"""resources.storage.patch: the official FHIR patch test cases (JSON Patch and FHIRPath Patch), the
error contract (Invalid for malformed documents, Unprocessable for patches that cannot apply),
and round-trip properties.

The FHIRPath Patch cases are FHIR XML (fhir-patch-tests.xml); fhir.resources (R4B models)
reads them into FHIR JSON.
"""

from __future__ import annotations

import copy
import json

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from resources.errors import Invalid, Unprocessable
from resources.storage.patch import apply_fhirpath_patch, apply_json_patch
from tests.shared import shared_path

# --- the official test files ---------------------------------------------------------------


def _fhir_json(element: etree._Element) -> dict:
    """FHIR XML → FHIR JSON through the fhir.resources models."""
    model = get_fhir_model_class(etree.QName(element).localname)
    resource = model.model_validate_xml(etree.tostring(element)).model_dump(mode="json")
    return _drop_div_tail(resource)  # type: ignore[return-value]


def _drop_div_tail(value: object) -> object:
    """fhir.resources keeps the XML text after ``</div>`` (the element's tail) in
    ``Narrative.div``; it is not part of the XHTML (narrative.html#xhtml), so drop it."""
    if isinstance(value, list):
        return [_drop_div_tail(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _drop_div_tail(v) for k, v in value.items()}
    div = out.get("div")
    if isinstance(div, str) and div.startswith("<div") and div.rstrip().endswith("</div>"):
        out["div"] = div.rstrip()
    return out


def _only_child(element: etree._Element) -> etree._Element:
    (child,) = [c for c in element if isinstance(c.tag, str)]
    return child


def _fhirpath_cases() -> list:
    parser = etree.XMLParser(remove_comments=True)
    root = etree.parse(str(shared_path("fhir", "patch-tests", "fhir-patch-tests.xml")), parser)
    cases = []
    for case in root.getroot().iter("case"):
        error = case.find("error")
        expected = (
            ("error", error.get("msg"))
            if error is not None
            else ("output", _fhir_json(_only_child(case.find("output"))))
        )
        resource = _fhir_json(_only_child(case.find("input")))
        diff = _fhir_json(_only_child(case.find("diff")))
        cases.append(pytest.param(resource, diff, expected, id=case.get("name")))
    return cases


def _json_patch_cases() -> list:
    with shared_path("fhir", "patch-tests", "json-patch-tests.json").open() as f:
        cases = json.load(f)
    return [pytest.param(c["doc"], c["patch"], c, id=c["comment"]) for c in cases]


FHIRPATH_CASES = _fhirpath_cases()
JSON_PATCH_CASES = _json_patch_cases()


def test_all_official_cases_are_collected():
    assert len(FHIRPATH_CASES) == 33
    assert len(JSON_PATCH_CASES) == 16
    assert len({p.id for p in FHIRPATH_CASES}) == 33


@pytest.mark.parametrize(("resource", "diff", "expected"), FHIRPATH_CASES)
def test_official_fhirpath_patch_case(resource, diff, expected):
    before = copy.deepcopy(resource)
    kind, want = expected
    if kind == "error":
        with pytest.raises(Unprocessable) as err:
            apply_fhirpath_patch(resource, diff)
        assert want in err.value.diagnostics
    else:
        assert apply_fhirpath_patch(resource, diff) == want
    assert resource == before


@pytest.mark.parametrize(("doc", "patch", "case"), JSON_PATCH_CASES)
def test_official_json_patch_case(doc, patch, case):
    before = copy.deepcopy(doc)
    if "error" in case:
        with pytest.raises(Unprocessable):
            apply_json_patch(doc, patch)
    else:
        assert apply_json_patch(doc, patch) == case["expected"]
    assert doc == before


# --- building FHIRPath Patch documents -----------------------------------------------------


def op(type_: str, path: str, **parts: object) -> dict:
    """One ``operation`` parameter; ``value`` takes a dict of value[x] (or ``part``) keys."""
    out = [{"name": "type", "valueCode": type_}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})  # type: ignore[dict-item]
        elif name == "name":
            out.append({"name": "name", "valueString": value})
        else:
            out.append({"name": name, "valueInteger": value})
    return {"name": "operation", "part": out}


def fp_patch(*operations: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(operations)}


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [
        {"system": "urn:a", "value": "1"},
        {"system": "urn:b", "value": "2"},
        {"system": "urn:b", "value": "3"},
    ],
    "name": [{"family": "Smith", "given": ["Ann", "Bea", "Ann"]}, {"given": ["Cy"]}],
    "birthDate": "1970-01-01",
    "_birthDate": {"extension": [{"url": "urn:t", "valueTime": "10:00:00"}]},
    "deceasedBoolean": False,
}


def patched(*operations: dict, resource: dict | None = None) -> dict:
    return apply_fhirpath_patch(resource or PATIENT, fp_patch(*operations))


# --- selecting: where(), [n], choice types -------------------------------------------------


def test_replace_through_where_filter():
    out = patched(
        op(
            "replace",
            "Patient.identifier.where(system = 'urn:a').value",
            value={"valueString": "9"},
        )
    )
    assert [i["value"] for i in out["identifier"]] == ["9", "2", "3"]


def test_replace_many_selected_is_unprocessable():
    with pytest.raises(Unprocessable, match="selects 2 elements"):
        patched(
            op(
                "replace",
                "Patient.identifier.where(system = 'urn:b').value",
                value={"valueString": "9"},
            )
        )


def test_indexing_a_primitive_list_finds_the_right_duplicate():
    # given[2] and given[0] are both "Ann": the locator must take the one the path names
    out = patched(op("replace", "Patient.name[0].given[2]", value={"valueString": "Di"}))
    assert out["name"][0]["given"] == ["Ann", "Bea", "Di"]
    out = patched(op("delete", "Patient.name.given.where($this = 'Ann')[1]"))
    assert out["name"][0]["given"] == ["Ann", "Bea"]


def test_indexing_across_a_flattened_collection():
    out = patched(op("delete", "Patient.name.given[3]"))  # the fourth given name overall: "Cy"
    assert out["name"] == [{"family": "Smith", "given": ["Ann", "Bea", "Ann"]}]


def test_choice_element_selected_by_its_base_name():
    out = patched(op("replace", "Patient.deceased", value={"valueDateTime": "2020-02-02"}))
    assert "deceasedBoolean" not in out and out["deceasedDateTime"] == "2020-02-02"
    assert "deceased" not in patched(op("delete", "Patient.deceased"))
    assert "deceasedBoolean" not in patched(op("delete", "Patient.deceasedBoolean"))


def test_choice_element_added_with_its_type():
    out = patched(op("add", "Patient", name="multipleBirth", value={"valueInteger": 2}))
    assert out["multipleBirthInteger"] == 2
    with pytest.raises(Unprocessable, match="already has a value"):
        patched(op("add", "Patient", name="deceased", value={"valueDateTime": "2020"}))
    with pytest.raises(Unprocessable, match=r"multipleBirth\[x\] cannot be a String"):
        patched(op("add", "Patient", name="multipleBirth", value={"valueString": "two"}))


def test_choice_inside_nested_parts_takes_the_part_type():
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "bp"}}
    component = {
        "part": [
            {"name": "code", "valueCodeableConcept": {"text": "systolic"}},
            {"name": "value", "valueQuantity": {"value": 120, "unit": "mmHg"}},
        ]
    }
    out = patched(op("add", "Observation", name="component", value=component), resource=observation)
    assert out["component"] == [
        {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mmHg"}}
    ]
    out = patched(
        op("replace", "Observation.component[0].value.value", value={"valueDecimal": 130}),
        resource=out,
    )
    assert out["component"][0]["valueQuantity"]["value"] == 130


def test_contained_resource_elements_are_located():
    patient = {
        "resourceType": "Patient",
        "contained": [
            {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}}
        ],
    }
    out = patched(
        op(
            "replace",
            "Patient.contained.ofType(Observation).status",
            value={"valueCode": "amended"},
        ),
        resource=patient,
    )
    assert out["contained"][0]["status"] == "amended"
    out = patched(
        op("add", "Patient.contained[0]", name="valueString", value={"valueString": "v"}),
        resource=patient,
    )
    assert out["contained"][0]["valueString"] == "v"


# --- operation rules -----------------------------------------------------------------------


def test_delete_of_nothing_succeeds():
    assert patched(op("delete", "Patient.maritalStatus")) == PATIENT
    assert patched(op("delete", "Patient.identifier.where(system = 'urn:none')")) == PATIENT


def test_delete_of_many_is_unprocessable():
    with pytest.raises(Unprocessable, match="delete removes exactly one"):
        patched(op("delete", "Patient.identifier.where(system = 'urn:b')"))


def test_delete_removes_objects_left_empty():
    resource = {"resourceType": "Patient", "contact": [{"name": {"text": "a"}}], "active": True}
    assert patched(op("delete", "Patient.contact.name.text"), resource=resource) == {
        "resourceType": "Patient",
        "active": True,
    }


def test_add_to_nothing_is_unprocessable_and_names_the_operation():
    with pytest.raises(Unprocessable) as err:
        patched(
            op("replace", "Patient.birthDate", value={"valueDate": "1980-01-01"}),
            op("add", "Patient.maritalStatus", name="text", value={"valueString": "x"}),
        )
    assert err.value.diagnostics.startswith("operation 1 (add")
    assert "No content found at Patient.maritalStatus when adding" in err.value.diagnostics
    assert err.value.issues[0].expression == ("Parameters.parameter[1]",)


def test_add_of_unknown_element_is_unprocessable():
    with pytest.raises(Unprocessable, match="has no element 'nickname'"):
        patched(op("add", "Patient", name="nickname", value={"valueString": "x"}))


def test_add_of_a_present_single_element_is_unprocessable():
    with pytest.raises(Unprocessable, match="use replace"):
        patched(op("add", "Patient", name="birthDate", value={"valueDate": "1980-01-01"}))


def test_add_of_wrong_kind_of_value_is_unprocessable():
    with pytest.raises(Unprocessable, match="is a primitive, but the element is complex"):
        patched(op("add", "Patient", name="maritalStatus", value={"valueString": "M"}))
    with pytest.raises(Unprocessable, match="nested parts cannot"):
        patched(
            op("add", "Patient", name="gender", value={"part": [{"name": "x", "valueString": "y"}]})
        )


def test_add_a_single_part_to_a_repeating_child_makes_an_array():
    value = {"part": [{"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}}]}
    out = patched(op("add", "Patient", name="contact", value=value))
    assert out["contact"] == [{"telecom": [{"system": "phone", "value": "1"}]}]


def test_insert_bounds():
    value = {"valueIdentifier": {"value": "new"}}
    out = patched(op("insert", "Patient.identifier", value=value, index=3))
    assert out["identifier"][3] == {"value": "new"}
    with pytest.raises(Unprocessable, match="index 4 is out of range"):
        patched(op("insert", "Patient.identifier", value=value, index=4))
    out = patched(
        op("insert", "Patient.telecom", value={"valueContactPoint": {"value": "1"}}, index=0)
    )
    assert out["telecom"] == [{"value": "1"}]
    with pytest.raises(Unprocessable, match="not a repeating element"):
        patched(op("insert", "Patient.gender", value={"valueCode": "male"}, index=0))


def test_move_bounds():
    with pytest.raises(Unprocessable, match="source 3 is out of range"):
        patched(op("move", "Patient.identifier", source=3, destination=0))
    with pytest.raises(Unprocessable, match="destination 5 is out of range"):
        patched(op("move", "Patient.identifier", source=0, destination=5))


def test_list_operations_on_a_filtered_holder():
    out = patched(
        op(
            "insert",
            "Patient.name.where(family = 'Smith').given",
            value={"valueString": "Zoe"},
            index=0,
        )
    )
    assert out["name"][0]["given"] == ["Zoe", "Ann", "Bea", "Ann"]
    out = patched(op("move", "Patient.name[0].given", source=1, destination=0))
    assert out["name"][0]["given"] == ["Bea", "Ann", "Ann"]


def test_resource_itself_cannot_be_deleted_or_replaced():
    with pytest.raises(Unprocessable, match="resource itself"):
        patched(op("delete", "Patient"))
    with pytest.raises(Unprocessable, match="resource itself"):
        patched(op("replace", "Patient", value={"valueString": "x"}))


def test_computed_value_is_not_an_element():
    with pytest.raises(Unprocessable, match="not an element"):
        patched(op("replace", "Patient.name.given.first() + 'x'", value={"valueString": "y"}))
    with pytest.raises(Unprocessable, match="computed value"):
        patched(op("delete", "'a literal'"))


# --- primitive extensions (json.html#primitive) --------------------------------------------


def test_primitive_extension_deleted_and_added():
    out = patched(op("delete", "Patient.birthDate.extension[0]"))
    assert "_birthDate" not in out and out["birthDate"] == "1970-01-01"
    ext = {"valueExtension": {"url": "urn:x", "valueString": "y"}}
    out = patched(op("add", "Patient.name[0].given[1]", name="extension", value=ext))
    assert out["name"][0]["_given"] == [
        None,
        {"extension": [{"url": "urn:x", "valueString": "y"}]},
        None,
    ]


def test_primitive_list_keeps_its_extensions_aligned():
    resource = {
        "resourceType": "Patient",
        "name": [{"given": ["a", "b"], "_given": [None, {"id": "b"}]}],
    }
    out = patched(
        op("insert", "Patient.name[0].given", value={"valueString": "z"}, index=0),
        resource=resource,
    )
    assert out["name"][0] == {"given": ["z", "a", "b"], "_given": [None, None, {"id": "b"}]}
    out = patched(op("move", "Patient.name[0].given", source=1, destination=0), resource=resource)
    assert out["name"][0] == {"given": ["b", "a"], "_given": [{"id": "b"}, None]}
    out = patched(op("delete", "Patient.name[0].given[1]"), resource=resource)
    assert out["name"][0] == {"given": ["a"]}


def test_replace_replaces_the_whole_primitive_element():
    out = patched(op("replace", "Patient.birthDate", value={"valueDate": "1971-01-01"}))
    assert out["birthDate"] == "1971-01-01" and "_birthDate" not in out
    value = {"valueDate": "1972-01-01", "_valueDate": {"id": "d"}}
    assert patched(op("replace", "Patient.birthDate", value=value))["_birthDate"] == {"id": "d"}


# --- malformed documents -------------------------------------------------------------------


def raw_operation(*parts: dict) -> dict:
    return {"name": "operation", "part": list(parts)}


DELETE = {"name": "type", "valueCode": "delete"}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param([], "must be a Parameters", id="not-a-Parameters"),
        pytest.param({"resourceType": "Patient"}, "must be a Parameters", id="wrong-resource"),
        pytest.param(
            fp_patch({"name": "op", "part": []}), "named 'operation'", id="not-an-operation"
        ),
        pytest.param(fp_patch(op("upsert", "Patient")), "unknown operation type", id="bad-type"),
        pytest.param(
            fp_patch(op("add", "Patient", name="active")), "needs the part(s) value", id="no-value"
        ),
        pytest.param(
            fp_patch(op("insert", "Patient.identifier", value={"valueString": "x"})),
            "needs the part(s) index",
            id="insert-without-index",
        ),
        pytest.param(
            fp_patch(op("move", "Patient.identifier", source=0)),
            "needs the part(s) destination",
            id="move-without-destination",
        ),
        pytest.param(
            fp_patch(op("delete", "Patient.active", value={"valueBoolean": True})),
            "does not take the part(s) value",
            id="part-not-for-delete",
        ),
        pytest.param(
            fp_patch(op("delete", "Patient name")), "not a valid FHIRPath", id="syntax-error"
        ),
        pytest.param(
            fp_patch(op("delete", "Patient.name.where(")), "not a valid FHIRPath", id="unclosed"
        ),
        pytest.param(
            fp_patch(op("insert", "Patient.identifier[0]", value={"valueString": "x"}, index=0)),
            "needs the path of a list",
            id="insert-path-not-a-list",
        ),
        pytest.param(
            fp_patch(op("move", "Patient.identifier", source=-1, destination=0)),
            "non-negative valueInteger",
            id="negative-index",
        ),
        pytest.param(
            fp_patch(op("move", "Patient.identifier", source=True, destination=0)),
            "non-negative valueInteger",
            id="boolean-index",
        ),
        pytest.param(
            fp_patch(
                op("replace", "Patient.active", value={"valueBoolean": True, "valueString": "x"})
            ),
            "exactly one value[x]",
            id="two-values",
        ),
        pytest.param(
            fp_patch(op("replace", "Patient.active", value={})),
            "exactly one value[x]",
            id="empty-value",
        ),
        pytest.param(
            fp_patch(op("add", "Patient", name="contact", value={"part": [{"valueString": "x"}]})),
            "has no name",
            id="unnamed-nested-part",
        ),
        pytest.param(
            fp_patch(
                raw_operation(
                    DELETE,
                    {"name": "path", "valueString": "Patient.a"},
                    {"name": "path", "valueString": "Patient.b"},
                )
            ),
            "appears more than once",
            id="duplicate-part",
        ),
        pytest.param(
            fp_patch(
                raw_operation(
                    DELETE,
                    {"name": "path", "valueString": "Patient.a"},
                    {"name": "where", "valueString": "x"},
                )
            ),
            "unknown part 'where'",
            id="unknown-part",
        ),
        pytest.param(
            fp_patch(raw_operation(DELETE, {"name": "path", "valueString": ""})),
            "non-empty",
            id="empty-path",
        ),
    ],
)
def test_malformed_fhirpath_patch_is_invalid(document, reason):
    with pytest.raises(Invalid) as err:
        apply_fhirpath_patch(PATIENT, document)
    assert reason in err.value.diagnostics


def test_malformed_operation_is_named_by_index():
    with pytest.raises(Invalid) as err:
        apply_fhirpath_patch(
            PATIENT, fp_patch(op("delete", "Patient.active"), op("upsert", "Patient"))
        )
    assert err.value.diagnostics.startswith("operation 1:")
    assert err.value.issues[0].expression == ("Parameters.parameter[1]",)


def test_nothing_applies_when_a_later_operation_is_malformed():
    # read fully before applying: the first operation must not leak into a result
    with pytest.raises(Invalid):
        apply_fhirpath_patch(PATIENT, fp_patch(op("delete", "Patient.birthDate"), {"name": "x"}))


@pytest.mark.parametrize(
    "operations",
    [
        pytest.param({"op": "add", "path": "/a", "value": 1}, id="not-an-array"),
        pytest.param([{"op": "upsert", "path": "/a"}], id="unknown-op"),
        pytest.param([{"path": "/a", "value": 1}], id="missing-op"),
        pytest.param([{"op": "add", "value": 1}], id="missing-path"),
        pytest.param([{"op": "add", "path": "a", "value": 1}], id="pointer-without-slash"),
        pytest.param([{"op": "add", "path": "/a"}], id="add-without-value"),
        pytest.param([{"op": "move", "path": "/a"}], id="move-without-from"),
        pytest.param([{"op": "copy", "from": "x", "path": "/a"}], id="bad-from-pointer"),
        pytest.param(["add"], id="operation-not-an-object"),
        pytest.param([{"op": "add", "path": 5, "value": 1}], id="path-not-a-string"),
    ],
)
def test_malformed_json_patch_is_invalid(operations):
    with pytest.raises(Invalid):
        apply_json_patch({"resourceType": "Patient"}, operations)


def test_json_patch_failure_names_the_operation():
    ops = [{"op": "add", "path": "/active", "value": True}, {"op": "remove", "path": "/gender"}]
    with pytest.raises(Unprocessable) as err:
        apply_json_patch({"resourceType": "Patient"}, ops)
    assert err.value.diagnostics.startswith("operation 1 (remove at '/gender')")
    assert err.value.issues[0].expression == ("[1]",)


def test_json_patch_test_op_distinguishes_booleans_from_numbers():
    with pytest.raises(Unprocessable):
        apply_json_patch({"a": True}, [{"op": "test", "path": "/a", "value": 1}])


def test_json_patch_cannot_replace_the_document_with_a_non_object():
    with pytest.raises(Unprocessable):
        apply_json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}])


# --- properties ----------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
json_docs = st.dictionaries(st.text(max_size=6), json_values, max_size=5)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(doc=json_docs, key=st.text(max_size=6), value=json_values)
def test_json_patch_add_then_remove_round_trips(doc, key, value):
    doc.pop(key, None)
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    before = copy.deepcopy(doc)
    added = apply_json_patch(doc, [{"op": "add", "path": pointer, "value": value}])
    assert added[key] == value
    assert apply_json_patch(added, [{"op": "remove", "path": pointer}]) == before
    assert doc == before


json_ops = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]),
        "path": st.sampled_from(["", "/a", "/a/0", "/b", "/a/-", "/x/y"]),
    },
    optional={"value": json_values, "from": st.sampled_from(["/a", "/b", "/a/0"])},
)


@PROPERTY
@given(doc=json_docs, ops=st.lists(json_ops, max_size=4))
def test_json_patch_never_mutates_its_input(doc, ops):
    before = copy.deepcopy(doc)
    try:
        apply_json_patch(doc, ops)
    except (Invalid, Unprocessable):
        pass
    assert doc == before


identifier_values = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=6)
patients = st.lists(identifier_values, min_size=1, max_size=5).map(
    lambda values: {"resourceType": "Patient", "identifier": [{"value": v} for v in values]}
)


@PROPERTY
@given(patient=patients, data=st.data())
def test_fhirpath_insert_then_delete_round_trips(patient, data):
    index = data.draw(st.integers(0, len(patient["identifier"])))
    new = data.draw(identifier_values)
    before = copy.deepcopy(patient)
    inserted = patched(
        op("insert", "Patient.identifier", value={"valueIdentifier": {"value": new}}, index=index),
        resource=patient,
    )
    assert inserted["identifier"][index] == {"value": new}
    assert patched(op("delete", f"Patient.identifier[{index}]"), resource=inserted) == before
    assert patient == before


@PROPERTY
@given(patient=patients, data=st.data())
def test_fhirpath_move_is_undone_by_the_reverse_move(patient, data):
    last = len(patient["identifier"]) - 1
    source, destination = data.draw(st.integers(0, last)), data.draw(st.integers(0, last))
    moved = patched(
        op("move", "Patient.identifier", source=source, destination=destination), resource=patient
    )
    assert moved["identifier"][destination] == patient["identifier"][source]
    back = patched(
        op("move", "Patient.identifier", source=destination, destination=source), resource=moved
    )
    assert back == patient


@PROPERTY
@given(patient=patients, new=identifier_values)
def test_fhirpath_add_then_delete_through_where_round_trips(patient, new):
    patient = {**patient, "identifier": [i for i in patient["identifier"] if i["value"] != new]}
    if not patient["identifier"]:
        del patient["identifier"]
    added = patched(
        op(
            "add",
            "Patient",
            name="identifier",
            value={"valueIdentifier": {"system": "urn:new", "value": new}},
        ),
        resource=patient,
    )
    assert added["identifier"][-1] == {"system": "urn:new", "value": new}
    assert (
        patched(op("delete", "Patient.identifier.where(system = 'urn:new')"), resource=added)
        == patient
    )
