"""BAR repeating groups (``mappings/hl7v2/messages/bar.py``): every patient group of a BAR^P02 and
every visit group of a BAR^P01 / P05 mapped, each segment to its own patient and visit."""

from __future__ import annotations

from mappings.hl7v2 import map_parsed, parse
from resources.validation import validate_resource

HEAD = "MSH|^~\\&|BILL|HOSP|HEARTH|HEARTH|20240105081500+0100||BAR^{event}|c-{event}|P|2.5.1\rEVN|{event}|20240105081500\r"


def _pid(mrn: str, account: str) -> str:
    return f"PID|1||{mrn}^^^HOSP^MR||Doe^{mrn}||19700215|F" + "|" * 10 + f"{account}^^^HOSP\r"


def _pv1(visit: str, ward: str) -> str:
    return f"PV1|1|I|{ward}^R1" + "|" * 16 + f"{visit}^^^HOSP\r"


def _by_type(bundle: dict, kind: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_p02_purges_the_account_of_every_patient_group() -> None:
    text = HEAD.format(event="P02") + _pid("M1", "A1") + _pv1("V1", "W1") + _pid("M2", "A2")
    bundle = map_parsed(parse(text)).bundle
    patients = _by_type(bundle, "Patient")
    assert [p["request"]["url"].rsplit("%7C", 1)[1] for p in patients] == ["M1", "M2"]
    accounts = {a["request"]["url"].rsplit("%7C", 1)[1]: a["resource"] for a in _by_type(bundle, "Account")}  # fmt: skip
    assert {k: (a["status"], a["subject"][0]["reference"]) for k, a in accounts.items()} == {
        "A1": ("inactive", patients[0]["fullUrl"]),
        "A2": ("inactive", patients[1]["fullUrl"]),
    }
    (visit,) = _by_type(bundle, "Encounter")  # the first group's PV1 only: the second has none
    assert visit["resource"]["subject"] == {"reference": patients[0]["fullUrl"]}
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] in ("Patient", "Account", "Encounter"):
            validate_resource({k: v for k, v in e["resource"].items()})


def test_p01_maps_every_visit_group_with_its_own_segments() -> None:
    text = (
        HEAD.format(event="P01")
        + _pid("M1", "A1")
        + _pv1("V1", "W1")
        + "DG1|1||I10^Hypertension^I10||20240101|A|||||||||1|||||D1^^^HOSP\r"
        + _pv1("V2", "W2")
        + "DG1|1||E11^Diabetes^I10||20240102|A|||||||||1|||||D2^^^HOSP\r"
    )
    bundle = map_parsed(parse(text)).bundle
    visits = _by_type(bundle, "Encounter")
    assert [v["request"]["url"].rsplit("%7C", 1)[1] for v in visits] == ["V1", "V2"]
    locations = {e["fullUrl"]: e["resource"]["name"] for e in _by_type(bundle, "Location")}
    assert [locations[v["resource"]["location"][0]["location"]["reference"]] for v in visits] == [
        "W1, R1",
        "W2, R1",
    ]  # each visit its own PV1-3, not the first PV1's
    conditions = _by_type(bundle, "Condition")
    assert [c["resource"]["code"]["coding"][0]["code"] for c in conditions] == ["I10", "E11"]
    assert len(_by_type(bundle, "Patient")) == 1
    assert {a["resource"]["status"] for a in _by_type(bundle, "Account")} == {"active"}
    # each visit's diagnoses are its own
    by_url = {v["fullUrl"]: v["request"]["url"].rsplit("%7C", 1)[1] for v in visits}
    assert [by_url[c["resource"]["encounter"]["reference"]] for c in conditions] == ["V1", "V2"]
