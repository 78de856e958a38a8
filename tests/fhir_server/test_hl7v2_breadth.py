"""Every message of the shared FHIR-Converter set (../shared/hl7v2/fhir-converter/, 80 messages,
73 with the converter's expected bundle) sent to a running Hearth over HTTP, on SQLite and
PostgreSQL: each is accepted (AA), the resource types it wrote are measured in the patient's
compartment and compared with the converter's output, the practitioners / organisations /
locations they point at are stored, and sending the same message again changes nothing.

Each message gets a patient of its own (a suffix on its PID-3 identifier, a fresh MSH-10), so
what is measured is what that message wrote. Where Hearth writes less than the converter the
difference is listed in ``GAPS`` with its reason (docs/hl7v2.md keeps the same table); a gap
that closes fails the test until it is taken off the list."""

from __future__ import annotations

import csv
import json
import re
import uuid

import httpx
import pytest

from mappings.hl7v2 import moves
from tests.shared import shared_path

CONVERTER = shared_path("hl7v2", "fhir-converter")
ER7 = {"content-type": "x-application/hl7-v2+er7"}

# Patient-compartment types a message may write (what is measured).
CLINICAL = (
    "Encounter RelatedPerson AllergyIntolerance Condition Procedure Coverage Observation "
    "ServiceRequest DiagnosticReport Specimen Immunization MedicationRequest MedicationDispense "
    "DocumentReference Appointment ChargeItem Account"
).split()
PARTIES = ("Practitioner", "Organization", "Location")

# What the converter writes and Hearth does not, per message, and why (docs/hl7v2.md).
ORDER_REPORT = "DiagnosticReport"  # an OBR in an order/document message is the order itself
GAPS: dict[str, set[str]] = {
    "ADT-A02-01.hl7": {"Condition", "Procedure"},  # PDA (death) and DB1: not mapped
    "ORU-R01-01.hl7": {"DocumentReference", "MedicationDispense"},  # OBX ED; FT1 drug fields
    "ORM-O01-01.hl7": {"MedicationDispense", "Specimen"},  # FT1 drug; OBR-15 specimen source
    "ORM-O01-02.hl7": {ORDER_REPORT, "Specimen"},
    "ORM-O01-03.hl7": {"MedicationDispense", "Specimen"},
    "ORM-O01-04.hl7": {"MedicationDispense"},
    "MDM-T01-01.hl7": {"Specimen"},  # OBR-15 specimen source
    "MDM-T02-01.hl7": {ORDER_REPORT, "Observation", "Specimen"},  # OBX → the document content
    "MDM-T02-02.hl7": {"Observation", "Specimen"},
    "MDM-T05-01.hl7": {"Specimen"},
    "MDM-T06-01.hl7": {ORDER_REPORT, "Observation", "Specimen"},
    "MDM-T09-01.hl7": {"Specimen"},
    "MDM-T10-01.hl7": {ORDER_REPORT, "Observation", "Specimen"},
    "RDE-O11-01.hl7": {"MedicationDispense"},  # the converter dispenses from RXE/FT1
    "RDE-O25-01.hl7": {"MedicationDispense"},
    "OML-O21-01.hl7": {ORDER_REPORT, "MedicationDispense"},
    "OML-O21-02.hl7": {ORDER_REPORT},
    "OML-O21-03.hl7": {ORDER_REPORT},
    "OMG-O19-01.hl7": {ORDER_REPORT},
    "OUL-R22-01.hl7": {"DocumentReference"},  # OBX ED (an image) is not a document here
    "OUL-R23-01.hl7": {"DocumentReference"},
    "OUL-R24-01.hl7": {"DocumentReference"},
    "VXU-V04-01.hl7": {"DocumentReference"},  # OBX of a VIS document: an Observation here
    "BAR-P12-01.hl7": {ORDER_REPORT},
    "DFT-P03-01.hl7": {ORDER_REPORT, "MedicationDispense"},
    "DFT-P11-01.hl7": {"MedicationDispense"},
    "REF-I12-01.hl7": {ORDER_REPORT},
    "REF-I14-01.hl7": {ORDER_REPORT},
    "MDHHS-OML-O21-1.hl7": {"Account"},  # PID-18 is empty: the converter invents one
    # both patient groups name the same account (PID-18) and mother (PID-21): one record each,
    # the second group's (the converter writes two of each)
    "BAR-P02-01.hl7": {"Account", "RelatedPerson"},
    **{
        f"SIU-{e}-01.hl7": {"ServiceRequest"}  # AIS: Appointment.serviceType, not an order
        for e in ("S12", "S13", "S14", "S15", "S16", "S17", "S26")
    },
}


def _expected() -> dict[str, str]:
    with open(CONVERTER / "PAIRS.tsv", encoding="utf-8") as f:
        return {r["input_hl7"]: r["expected_json"] for r in csv.DictReader(f, delimiter="\t")}


EXPECTED = _expected()
MESSAGES = sorted(p.name for p in (CONVERTER / "messages").glob("*.hl7"))


def _own_patient(text: str, suffix: str) -> tuple[str, str, str]:
    """The message with its first PID-3 id and MSH-10 made unique; (message, id, prior id of
    MRG-1 or "")."""
    lines = [s for s in re.split(r"\r\n|\n|\r", text.lstrip("\ufeff")) if s.strip()]
    sep = lines[0][3]
    comp = lines[0][4]
    ids = {"pid": "", "mrg": ""}
    out = []
    for line in lines:
        fields = line.split(sep)
        if fields[0] == "MSH":
            fields[9] = f"{fields[9]}-{suffix}"
        for seg, n, key in (("PID", 3, "pid"), ("MRG", 1, "mrg")):
            if fields[0] == seg and len(fields) > n and fields[n]:
                parts = fields[n].split(comp)
                parts[0] = f"{parts[0]}-{suffix}"
                ids[key] = ids[key] or parts[0]  # the first patient (BAR^P02 has several)
                fields[n] = comp.join(parts)
        out.append(sep.join(fields))
    return "\r".join(out) + "\r", ids["pid"], ids["mrg"]


def _ack_code(r: httpx.Response) -> str:
    """The application outcome: the header (a sample asking for enhanced mode, MSH-15 / MSH-16,
    may get an accept ACK only, or no ACK at all), checked against the application ACK when one
    was sent."""
    code = r.headers["x-hl7-ack-code"]
    msa = [s.split("|")[1] for s in r.text.split("\r") if s.startswith("MSA")]
    assert not msa or msa[-1] in (code, "CA"), r.text
    return code


def _patient(client: httpx.Client, value: str) -> dict:
    found = client.get("/Patient", params={"identifier": value}).json().get("entry", [])
    assert len(found) == 1, (value, len(found))
    return found[0]["resource"]


def _compartment(client: httpx.Client, pid: str) -> dict[str, dict[str, str]]:
    """{type: {id: versionId}} of the clinical resources in the patient's compartment."""
    out: dict[str, dict[str, str]] = {}
    for res_type in CLINICAL:
        r = client.get(f"/Patient/{pid}/{res_type}", params={"_count": 200})
        assert r.status_code == 200, (res_type, r.text[:300])
        found = {
            e["resource"]["id"]: e["resource"]["meta"]["versionId"]
            for e in r.json().get("entry", [])
        }
        if found:
            out[res_type] = found
    return out


def _references(client: httpx.Client, seen: dict[str, dict[str, str]]) -> set[str]:
    refs: set[str] = set()
    for res_type, ids in seen.items():
        for rid in ids:
            body = client.get(f"/{res_type}/{rid}").text
            refs |= set(
                re.findall(r'"reference": ?"((?:Practitioner|Organization|Location)/[^"]+)"', body)
            )
    return refs


def _seed(message: str, pid_value: str, prior: str, suffix: str) -> str:
    """An ADT^A04 registering what the message's MRG names (the prior patient MRG-1, with the
    account MRG-3 as PID-18 and the visit MRG-5 as PV1-19), or "" without an MRG."""
    segments = message.split("\r")
    mrg = next((s.split("|") for s in segments if s.startswith("MRG|")), None)
    event = segments[0].split("|")[8].split("^")[1]
    if mrg is None or not (prior or event in moves.EVENTS):
        return ""  # an MRG the event does not act on (A06's prior account): nothing to seed
    mrg += [""] * 8
    pid = next(s for s in segments if s.startswith("PID")).split("|") + [""] * 20
    if prior:
        pid[3] = pid[3].replace(pid_value, prior)
    if mrg[3]:
        pid[18] = mrg[3]
    evn = [s for s in segments if s.startswith("EVN|")]  # the same time: not "out of order"
    seed = [segments[0], *evn, "|".join(pid).rstrip("|")]
    if mrg[5]:
        seed.append("PV1|1|O" + "|" * 17 + mrg[5])
    msh = seed[0].split("|")
    msh[8], msh[9] = "ADT^A04^ADT_A01", f"{msh[9]}-seed"
    seed[0] = "|".join(msh)
    return "\r".join(seed) + "\r"


@pytest.mark.parametrize("name", MESSAGES)
def test_shared_message_is_stored_like_the_converter(client: httpx.Client, name: str) -> None:
    text = (CONVERTER / "messages" / name).read_bytes().decode("utf-8", "replace")
    suffix = uuid.uuid4().hex[:8]
    message, pid_value, prior = _own_patient(text, suffix)
    seed = _seed(message, pid_value, prior, suffix)
    if seed:  # a merge or move needs the record it retires or moves
        r = client.post("/$hl7v2", content=seed, headers=ER7)
        assert _ack_code(r) == "AA", r.text
    r = client.post("/$hl7v2", content=message, headers=ER7)
    assert r.status_code in (200, 204) and _ack_code(r) == "AA", r.text

    patient = _patient(client, pid_value)
    written = _compartment(client, patient["id"])
    refs = _references(client, written)
    for ref in sorted(refs)[:20]:
        assert client.get(f"/{ref}").status_code == 200, ref
    kinds = set(written) | {ref.split("/")[0] for ref in refs}

    if name in EXPECTED:
        want = json.loads((CONVERTER / "expected" / EXPECTED[name]).read_text(encoding="utf-8-sig"))
        theirs = {e["resource"]["resourceType"] for e in want["entry"]}
        compared = theirs & set(CLINICAL)
        missing = compared - kinds
        gaps = GAPS.get(name, set())
        assert missing == gaps, f"{name}: wrote {sorted(kinds)}, converter {sorted(compared)}"
        print(f"{name}: {len(compared & kinds)}/{len(compared)} of the converter's clinical types")

    # the same message again (same MSH-10): nothing changes
    r = client.post("/$hl7v2", content=message, headers=ER7)
    assert _ack_code(r) == "AA", r.text
    assert _compartment(client, patient["id"]) == written
    assert _patient(client, pid_value)["meta"]["versionId"] == patient["meta"]["versionId"]
