"""ADT cancels over ``POST /fhir/$hl7v2`` on SQLite and PostgreSQL restore the state before the
event they cancel (HL7 v2.5.1 3.3.11-3.3.13, the IG's Event[EncounterStatus]): A12 puts the
patient back where PV1-3 says and forgets the cancelled transfer's location; A13 makes the visit
in progress again with no end and no discharge disposition; A11 cancels the visit. An A12
without PV1-3 is AE: the location to restore is not guessed."""

from __future__ import annotations

import httpx

from tests.fhir_server.test_hl7v2 import AUTHORITY, _uid, msa, one, post


def adt(event: str, mrn: str, visit: str, *, loc: str, prior: str = "", end: str = "") -> str:
    pv1 = ["PV1", "1", "I", loc, "", "", prior] + [""] * 12 + [f"{visit}^^^HOSP"]
    pv1 += [""] * (36 - len(pv1)) + ["01" if end else ""]  # PV1-36 discharge disposition
    pv1 += [""] * (44 - len(pv1)) + ["20240105080000", end]
    return (
        f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||ADT^{event}^ADT_A01|{_uid()}|P|2.5.1\r"
        f"EVN|{event}|20240105081500\r"
        f"PID|1||{mrn}^^^HOSP^MR||Cancel^Jane||19700215|F\r" + "|".join(pv1) + "\r"
    )


def places(encounter: dict) -> list[tuple[str, str]]:
    return [(x["location"].get("display", ""), x["status"]) for x in encounter["location"]]


def test_cancel_transfer_and_discharge_restore_the_visit(client: httpx.Client) -> None:
    mrn, visit = _uid(), _uid()
    key = f"identifier={AUTHORITY}|{visit}"
    assert msa(post(client, adt("A01", mrn, visit, loc="W1^R1^B1")).text)[1] == "AA"
    assert msa(post(client, adt("A02", mrn, visit, loc="W2^R2^B2", prior="W1^R1^B1")).text)[1] == "AA"  # fmt: skip
    moved = one(client, "Encounter", key)
    assert places(moved) == [("W2, R2, B2", "active"), ("W1, R1, B1", "completed")]

    # A12: PV1-3 is where the patient was before the transfer, PV1-6 the cancelled place
    r = post(client, adt("A12", mrn, visit, loc="W1^R1^B1", prior="W2^R2^B2"))
    assert msa(r.text)[1] == "AA", r.text
    back = one(client, "Encounter", key)
    assert back["id"] == moved["id"] and back["status"] == "in-progress"
    assert places(back) == [("W1, R1, B1", "active")]

    r = post(client, adt("A03", mrn, visit, loc="W1^R1^B1", end="20240107120000"))
    assert msa(r.text)[1] == "AA", r.text
    gone = one(client, "Encounter", key)
    assert gone["status"] == "finished" and gone["period"]["end"].startswith("2024-01-07")
    assert gone["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "01"
    assert places(gone) == [("W1, R1, B1", "completed")]

    # A13 (its PV1 still carrying the discharge it cancels)
    r = post(client, adt("A13", mrn, visit, loc="W1^R1^B1", end="20240107120000"))
    assert msa(r.text)[1] == "AA", r.text
    again = one(client, "Encounter", key)
    assert again["status"] == "in-progress"
    assert again["period"] == {"start": "2024-01-05T08:00:00+01:00"}
    assert "dischargeDisposition" not in again.get("hospitalization", {})
    assert places(again) == [("W1, R1, B1", "active")]

    assert msa(post(client, adt("A11", mrn, visit, loc="W1^R1^B1")).text)[1] == "AA"
    assert one(client, "Encounter", key)["status"] == "cancelled"


def test_cancel_transfer_without_the_prior_location_is_refused(client: httpx.Client) -> None:
    mrn, visit = _uid(), _uid()
    post(client, adt("A02", mrn, visit, loc="W2^R2^B2", prior="W1^R1^B1"))
    r = post(client, adt("A12", mrn, visit, loc="", prior="W2^R2^B2"))
    assert r.headers["X-HL7-Ack-Code"] == "AE"
    assert "|PV1^1^3|101^Required field missing^HL70357|E|" in r.text
    encounter = one(client, "Encounter", f"identifier={AUTHORITY}|{visit}")
    assert places(encounter)[0] == ("W2, R2, B2", "active")  # nothing was applied
