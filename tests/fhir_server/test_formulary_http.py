"""Hearth's formulary over HTTP on SQLite and PostgreSQL: the web app's medication picker is
``ValueSet/$expand?url=…formulary&filter=…`` (RxNorm codes, names), and ``CodeSystem/$lookup``
gives a code's ingredients and drug classes, the same properties the allergy and interaction
checks read."""

from __future__ import annotations

import httpx

from terminology.formulary import DRUG_CLASS, FORMULARY_VALUE_SET, RXNORM


def contains(resp: httpx.Response) -> list[tuple[str, str, str]]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["resourceType"] == "ValueSet"
    return [(c["system"], c["code"], c["display"]) for c in body["expansion"].get("contains", [])]


def properties(resp: httpx.Response) -> dict[str, list]:
    assert resp.status_code == 200, resp.text
    out: dict[str, list] = {}
    for p in resp.json()["parameter"]:
        if p["name"] == "property":
            parts = {q["name"]: q for q in p["part"]}
            value = next(v for k, v in parts["value"].items() if k.startswith("value"))
            out.setdefault(parts["code"]["valueCode"], []).append(value)
        elif p["name"] == "display":
            out["display"] = [p["valueString"]]
    return out


def test_the_picker_expands_the_formulary_with_a_filter(client: httpx.Client) -> None:
    found = contains(client.get("/ValueSet/$expand", params={"url": FORMULARY_VALUE_SET, "filter": "warf"}))  # fmt: skip
    assert found == [(RXNORM, "11289", "warfarin")]
    found = contains(client.get("/ValueSet/$expand", params={"url": FORMULARY_VALUE_SET, "filter": "trimethoprim"}))  # fmt: skip
    assert found == [(RXNORM, "10831", "sulfamethoxazole / trimethoprim")]
    everything = contains(client.get("/ValueSet/$expand", params={"url": FORMULARY_VALUE_SET}))
    codes = {c for _s, c, _d in everything}
    assert {"4492", "3355", "723", "5640", "161", "11289", "6851"} <= codes
    assert "10180" not in codes  # an ingredient the formulary lists only as such
    assert contains(client.get("/ValueSet/$expand", params={"url": FORMULARY_VALUE_SET, "filter": "zzzz"})) == []  # fmt: skip
    # POST works the same
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": FORMULARY_VALUE_SET}, {"name": "filter", "valueString": "fluoro"}]}  # fmt: skip
    assert contains(client.post("/ValueSet/$expand", json=body)) == [
        (RXNORM, "4492", "fluorouracil")
    ]


def test_lookup_gives_ingredients_and_classes(client: httpx.Client) -> None:
    props = properties(
        client.get("/CodeSystem/$lookup", params={"system": RXNORM, "code": "10831"})
    )
    assert props["display"] == ["sulfamethoxazole / trimethoprim"]
    assert props["tty"] == ["MIN"] and props["ingredient"] == ["10180"]
    assert props["drug-class"] == [{"system": DRUG_CLASS, "code": "sulfonamide-antibacterial"}]
    props = properties(
        client.get("/CodeSystem/$lookup", params={"system": DRUG_CLASS, "code": "nsaid"})
    )
    assert props["allergy-cross-reactive"] == [True]
    # a code outside the fragment is unknown here, a clear 4xx, not a 500
    resp = client.get("/CodeSystem/$lookup", params={"system": RXNORM, "code": "999999999"})
    assert 400 <= resp.status_code < 500 and resp.json()["resourceType"] == "OperationOutcome"


def test_validate_code_says_rxnorm_is_held_only_in_part(client: httpx.Client) -> None:
    known = client.get("/CodeSystem/$validate-code", params={"url": RXNORM, "code": "11289"})
    assert known.status_code == 200, known.text
    assert {p["name"]: p for p in known.json()["parameter"]}["result"]["valueBoolean"] is True
    unknown = client.get("/CodeSystem/$validate-code", params={"url": RXNORM, "code": "999999999"})
    assert unknown.status_code == 200, unknown.text
    found = {p["name"]: p for p in unknown.json()["parameter"]}
    assert found["result"]["valueBoolean"] is False
    assert "only a fragment" in found["message"]["valueString"]
