"""terminology/lookup.py and validate.py: $lookup, $subsumes and $validate-code results."""

from __future__ import annotations

from terminology import Terminology
from terminology.codesystem import CodeSystem
from terminology.lookup import lookup, subsumes
from terminology.validate import Coded, in_code_system, in_value_set
from tests.terminology.content import CS_URL, code_system

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"


def params(p: dict) -> dict:
    out: dict = {}
    for x in p["parameter"]:
        out.setdefault(x["name"], []).append(x)
    return out


def value(p: dict) -> object:
    return next(v for k, v in p.items() if k.startswith("value"))


def test_lookup() -> None:
    got = params(lookup(CodeSystem(code_system()), "melanoma"))
    assert value(got["name"][0]) == "TestFindings"
    assert value(got["version"][0]) == "1"
    assert value(got["display"][0]) == "Malignant melanoma"
    assert got["designation"][0]["part"][0] == {"name": "language", "valueCode": "fr"}
    props = {(p["part"][0]["valueCode"], value(p["part"][1])) for p in got["property"]}
    assert props == {
        ("region", "skin"),
        ("parent", "skin"),
        ("child", "metastasis"),
        ("definition", "A malignant tumour of melanocytes"),
    }


def test_lookup_selected_properties() -> None:
    got = params(lookup(CodeSystem(code_system()), "skin", ["parent"]))
    assert [value(p["part"][1]) for p in got["property"]] == ["finding"]


def test_subsumes_parameters() -> None:
    out = subsumes(CodeSystem(code_system()), "lung", "metastasis")
    assert out["parameter"] == [{"name": "outcome", "valueCode": "subsumes"}]


def test_validate_in_code_system() -> None:
    cs = CodeSystem(code_system())
    ok = params(in_code_system(cs, [Coded(CS_URL, "nodule")]))
    assert value(ok["result"][0]) is True and value(ok["display"][0]) == "Pulmonary nodule"
    bad = params(in_code_system(cs, [Coded(None, "nope")]))
    assert value(bad["result"][0]) is False and "nope" in value(bad["message"][0])
    wrong_display = params(in_code_system(cs, [Coded(None, "nodule", "Lung nodule")]))
    assert value(wrong_display["result"][0]) is False
    assert value(wrong_display["display"][0]) == "Pulmonary nodule"
    designation = params(in_code_system(cs, [Coded(None, "melanoma", "Mélanome malin")]))
    assert value(designation["result"][0]) is True


def test_validate_in_value_set() -> None:
    t = Terminology()
    codes = t.expander.codes(t.resolver.require("ValueSet", GENDER_VS))
    yes = params(in_value_set(codes, GENDER_VS, [Coded(GENDER_CS, "female")]))
    assert value(yes["result"][0]) is True
    assert value(params(in_value_set(codes, GENDER_VS, [Coded(None, "other")]))["result"][0])
    no = params(in_value_set(codes, GENDER_VS, [Coded("urn:other", "female")]))
    assert value(no["result"][0]) is False
    # a CodeableConcept: one valid coding is enough
    mixed = [Coded("urn:other", "f"), Coded(GENDER_CS, "male")]
    assert value(params(in_value_set(codes, GENDER_VS, mixed))["result"][0]) is True
