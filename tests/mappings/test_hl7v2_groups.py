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


def test_report_and_order_roles_are_practitioner_roles() -> None:
    """IG OBR[DiagnosticReport]: OBR-32 → resultsInterpreter, OBR-34 / OBR-35 → performer
    (NDL[PractitionerRole], with event-performerFunction SPRF / TRANS); IG ORC[ServiceRequest]:
    ORC-12 → requester(PractitionerRole.practitioner). Roles from table 0443."""
    message = (
        "MSH|^~\\&|LAB|HOSP|HEARTH|HEARTH|20240105100000+0100||ORU^R01^ORU_R01|c1|P|2.5.1\r"
        "PID|1||m1^^^HOSP^MR||Doe^Jane||19700215|F\r"
        "ORC|RE|P1|F1^LAB|||||||||77^Order^Olga\r"
        "OBR|1|P1|F1^LAB|24320-4^BMP^LN|||20240105090000|||||||||||||||20240105095500|||F"
        "|||||||11&Reader&Rita^20240105^^W1^R2||12&Tech&Tom~13&Tech&Tina|14&Typist&Tess"
        "~&Nameless&Only\r"
        "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|3.9-5.5|N|||F\r"
    )
    entries = map_parsed(parse(message)).bundle["entry"]
    by_url = {e["fullUrl"]: e["resource"] for e in entries if "fullUrl" in e}

    def role(ref: dict) -> tuple[str, str]:
        res = by_url[ref["reference"]]
        assert res["resourceType"] == "PractitionerRole"
        validate_resource(
            {**res, "practitioner": {"reference": "Practitioner/x"}, "location": []}
            if "location" in res
            else {**res, "practitioner": {"reference": "Practitioner/x"}}
        )
        person = by_url[res["practitioner"]["reference"]]
        return res["code"][0]["coding"][0]["code"], person["identifier"][0]["value"]

    (report,) = [r for r in by_url.values() if r["resourceType"] == "DiagnosticReport"]
    assert [role(r) for r in report["resultsInterpreter"]] == [("PI", "11")]
    interpreter = by_url[report["resultsInterpreter"][0]["reference"]]
    assert interpreter["period"] == {"start": "2024-01-05"}
    assert by_url[interpreter["location"][0]["reference"]]["name"] == "W1, R2"
    assert [role(r) for r in report["performer"]] == [("TN", "12"), ("TN", "13"), ("TR", "14")]
    functions = [p["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] for p in report["performer"]]  # fmt: skip
    assert functions == ["SPRF", "SPRF", "TRANS"]  # the name-only transcriptionist: left out
    (order,) = [r for r in by_url.values() if r["resourceType"] == "ServiceRequest"]
    assert role(order["requester"]) == ("OP", "77")
    validate_resource({k: v for k, v in report.items() if k not in ("subject", "result")}
                      | {"performer": [{**p, "reference": "PractitionerRole/x"} for p in report["performer"]],
                         "resultsInterpreter": [{"reference": "PractitionerRole/x"}]})  # fmt: skip
