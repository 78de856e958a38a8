"""Hearth's formulary as data and the medication rule over it (terminology/formulary.py,
workflow/medchecks.py): every concept carries its RxNorm term type, ingredients and drug classes;
the interaction table loads and refuses a bad entry; an allergy applies by ingredient, by an
allergy-cross-reactive class or by a class coding, and not otherwise; interactions are found in
either order and only for the pairs in the table."""

from __future__ import annotations

import json

import pytest

from terminology.builtin import FORMULARY
from terminology.formulary import (
    DRUG_CLASS,
    FORMULARY_VALUE_SET,
    RXNORM,
    Formulary,
    FormularyError,
    default,
)
from workflow.medchecks import allergy_findings, drug_of


def rx(code: str) -> dict:
    return {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]}}


def allergy(code: str, system: str = RXNORM, **extra: object) -> dict:
    return {"resourceType": "AllergyIntolerance", "code": {"coding": [{"system": system, "code": code}]}, **extra}  # fmt: skip


def test_every_formulary_concept_has_ingredients_classes_and_a_term_type() -> None:
    bundle = json.loads(FORMULARY.read_text())
    rxnorm = next(e["resource"] for e in bundle["entry"] if e["resource"]["url"] == RXNORM)
    assert rxnorm["content"] == "fragment"  # RxNorm has far more: a code not here is unknown
    for c in rxnorm["concept"]:
        props = {p["code"] for p in c["property"]}
        assert {"tty", "ingredient", "drug-class"} <= props, c
    vs = next(e["resource"] for e in bundle["entry"] if e["resource"]["url"] == FORMULARY_VALUE_SET)
    listed = {c["code"] for c in vs["compose"]["include"][0]["concept"]}
    assert listed <= {c["code"] for c in rxnorm["concept"]}
    f = default()
    assert f.drug("10831").ingredients == {"10180"}  # sulfamethoxazole / trimethoprim (MIN)
    assert f.drug("1191").classes == {"nsaid", "antiplatelet"}
    assert f.cross_reactive("penicillin") and not f.cross_reactive("statin")
    assert all(i.source.strip() for i in f.all_interactions())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"severity": "severe"}, "severity"),
        ({"source": " "}, "source is required"),
        ({"b": {"class": "no-such-class"}}, "not a formulary ingredient or class"),
        ({"a": {"ingredient": "999999999"}}, "not a formulary ingredient or class"),
        ({"url": "javascript:alert(1)"}, "url is an http"),
    ],
)
def test_a_bad_interaction_entry_stops_the_load(tmp_path, change: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    good = {"id": "x", "a": {"ingredient": "11289"}, "b": {"class": "nsaid"}, "severity": "high",
            "summary": "s", "detail": "d", "source": "a label"}  # fmt: skip
    path = tmp_path / "interactions.json"
    path.write_text(json.dumps({"interactions": [{**good, **change}]}))
    with pytest.raises(FormularyError, match=message):
        Formulary(interactions=path).all_interactions()


def test_an_allergy_applies_by_ingredient_class_or_class_coding() -> None:
    f = default()
    ibuprofen, smx_tmp, amoxicillin = (drug_of(rx(c), f) for c in ("5640", "10831", "723"))
    assert ibuprofen and smx_tmp and amoxicillin
    # the drug itself, or one of its ingredients: high
    assert allergy_findings(amoxicillin, allergy("723"), f)[0] == "high"  # type: ignore[index]
    found = allergy_findings(smx_tmp, allergy("10180"), f)
    assert found and found[0] == "high" and "ingredient" in found[1]
    # another member of an allergy-cross-reactive class: moderate, high when critical
    found = allergy_findings(ibuprofen, allergy("1191"), f)
    assert found and found[0] == "moderate" and "Non-steroidal" in found[1]
    assert allergy_findings(ibuprofen, allergy("1191", criticality="high"), f)[0] == "high"  # type: ignore[index]
    # a class coded as such
    assert allergy_findings(amoxicillin, allergy("penicillin", DRUG_CLASS), f)


def test_no_false_allergy_hits() -> None:
    f = default()
    ibuprofen, atorvastatin, acetaminophen = (drug_of(rx(c), f) for c in ("5640", "83367", "161"))
    assert ibuprofen and atorvastatin and acetaminophen
    assert allergy_findings(acetaminophen, allergy("1191"), f) is None  # paracetamol is no NSAID
    assert (
        allergy_findings(atorvastatin, allergy("36567"), f) is None
    )  # statins: not a cross-reactive class
    assert allergy_findings(ibuprofen, allergy("723"), f) is None
    refuted = {"coding": [{"code": "refuted"}]}
    assert allergy_findings(ibuprofen, allergy("5640", verificationStatus=refuted), f) is None
    resolved = {"coding": [{"code": "resolved"}]}
    assert allergy_findings(ibuprofen, allergy("5640", clinicalStatus=resolved), f) is None
    # SNOMED CT and text-only allergies are not mapped (no substance hierarchy is shipped)
    assert allergy_findings(ibuprofen, allergy("387207008", "http://snomed.info/sct"), f) is None
    assert allergy_findings(ibuprofen, {"code": {"text": "ibuprofen"}}, f) is None
    # an uncoded prescription is not a drug the rule can check
    assert drug_of({"medicationCodeableConcept": {"text": "ibuprofen 400 mg"}}, f) is None


def test_interactions_in_either_order_and_only_listed_pairs() -> None:
    f = default()
    drug = {c: drug_of(rx(c), f) for c in ("11289", "5640", "1191", "6851", "10831", "161", "36567", "4053", "83367")}  # fmt: skip
    ids = lambda a, b: sorted(i.id for i in f.interactions(drug[a], drug[b]))  # type: ignore[arg-type]  # noqa: E731
    assert ids("11289", "5640") == ids("5640", "11289") == ["warfarin-nsaid"]
    assert ids("11289", "1191") == ["warfarin-antiplatelet", "warfarin-nsaid"]
    assert ids("6851", "10831") == ["methotrexate-sulfamethoxazole-trimethoprim"]
    assert ids("11289", "10831") == ["warfarin-sulfamethoxazole"]
    assert ids("36567", "4053") == ["simvastatin-erythromycin"]
    assert {i.severity for i in f.interactions(drug["6851"], drug["5640"])} == {"moderate"}  # type: ignore[arg-type]
    [mtx_smx] = f.interactions(drug["6851"], drug["10831"])  # type: ignore[arg-type]
    assert mtx_smx.url and mtx_smx.url.startswith("https://medsafe.govt.nz/")
    for a, b in [("11289", "161"), ("83367", "4053"), ("5640", "1191"), ("6851", "161")]:
        assert ids(a, b) == [], (a, b)
