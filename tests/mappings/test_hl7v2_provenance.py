"""The message's own record (mappings/hl7v2/provenance.py, V2-to-FHIR IG MSH[MessageHeader],
MSH[Provenance-Source], SFT[Device]) and ROL / PRT → PractitionerRole."""

from __future__ import annotations

from collections import Counter

from mappings.hl7v2 import map_parsed, parse
from tests.mappings.test_hl7v2_mapping import CONVERTER


def _bundle(raw: bytes | str) -> dict:
    return map_parsed(parse(raw)).bundle


def _one(bundle: dict, res_type: str) -> dict:
    found = [e for e in bundle["entry"] if e["resource"]["resourceType"] == res_type]
    assert len(found) == 1, [e["resource"] for e in found]
    return found[0]


def _by_url(bundle: dict) -> dict:
    return {e["fullUrl"]: e for e in bundle["entry"] if "fullUrl" in e}


def test_message_header_from_msh_and_sft() -> None:
    bundle = _bundle((CONVERTER / "messages" / "ADT-A01-01.hl7").read_bytes())
    header = _one(bundle, "MessageHeader")
    h = header["resource"]
    assert header["request"] == {"method": "PUT", "url": f"MessageHeader/{h['id']}"}
    assert h["eventCoding"] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0003",
        "code": "A01",
        "display": "ADT^A01^ADT_A01",
    }
    # MSH-24 (an HD with an ISO OID) is the source endpoint; SFT-3 / SFT-2 its software
    assert h["source"] == {
        "endpoint": "urn:oid:2.16.840.1.114884.10.20",
        "name": "ADTApp",
        "software": "Rhapsody",
        "version": "2.4.3.52854",
    }
    urls = _by_url(bundle)
    sender = urls[h["sender"]["reference"]]["resource"]
    assert sender["identifier"] == [
        {"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.840.1.122848.1.30"}
    ]
    assert sender["name"] == "GHHSFacility" and sender["address"] == [{"country": "USA"}]
    dest = h["destination"][0]
    assert dest["name"] == "EHRApp" and dest["endpoint"] == "urn:oid:2.16.840.1.114884.10.23"
    receiver = urls[dest["receiver"]["reference"]]["resource"]
    assert receiver["identifier"][0]["value"] == "urn:oid:2.16.840.1.1122848.1.32"
    assert h["meta"]["tag"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0103", "code": "P"}
    ]
    assert h["language"] == "en-US"
    software = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Device" and e["resource"].get("manufacturer")
    ]
    assert software == [
        {
            "resourceType": "Device",
            "identifier": [
                {"system": "urn:hearth:hl7v2:software", "value": "Orion/Rhapsody/2.4.3.52854"}
            ],
            "manufacturer": "Orion",
            "deviceName": [{"name": "Rhapsody", "type": "manufacturer-name"}],
            "version": [{"value": "2.4.3.52854"}],
            "modelNumber": "2.4.3",
            "note": [{"text": "Testactivity"}],
            "meta": software[0]["meta"],
        }
    ]


def test_provenance_names_every_write_and_the_sender() -> None:
    bundle = _bundle((CONVERTER / "messages" / "ADT-A01-01.hl7").read_bytes())
    prov = _one(bundle, "Provenance")["resource"]
    header = _one(bundle, "MessageHeader")
    written = {  # what the ADT mapping wrote (the record's own Devices and Organizations aside)
        e["fullUrl"]
        for e in bundle["entry"]
        if e["request"]["method"] in ("PUT", "POST")
        and e["resource"]["resourceType"] not in ("MessageHeader", "Provenance", "Device")
        and e["fullUrl"] not in _record_urls(bundle)
    }
    targets = {t["reference"] for t in prov["target"]}
    assert written <= targets  # everything the message wrote (the header's parties too)
    assert header["fullUrl"] not in targets
    assert {"role": "source", "what": {"reference": header["fullUrl"]}} in prov["entity"]
    assert prov["recorded"] == "1989-08-18T11:26:00+02:15" == prov["occurredDateTime"]
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "author"
    assert prov["agent"][0]["who"] == header["resource"]["sender"]
    assert prov["activity"]["coding"][0]["display"] == "ADT^A01^ADT_A01"
    for ref in targets | {prov["agent"][0]["who"]["reference"]}:
        assert ref in _by_url(bundle)  # every reference resolves inside the transaction


def _record_urls(bundle: dict) -> set[str]:
    header = _one(bundle, "MessageHeader")["resource"]
    refs = {
        header.get("sender", {}).get("reference"),
        header.get("responsible", {}).get("reference"),
    }
    refs |= {d.get("receiver", {}).get("reference") for d in header.get("destination", [])}
    return {r for r in refs if r}


def test_the_same_message_again_has_the_same_record_ids() -> None:
    raw = (CONVERTER / "messages" / "LAB-ORU-1.hl7").read_bytes()
    first, again = _bundle(raw), _bundle(raw)
    for kind in ("MessageHeader", "Provenance"):
        assert _one(first, kind)["request"] == _one(again, kind)["request"]
    other = raw.replace(b"|P|", b"|P|", 1)
    assert (
        _one(_bundle(other), "MessageHeader")["request"] == _one(first, "MessageHeader")["request"]
    )


MSH = (
    "MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||ADT^{event}^{structure}|{cid}|P|2.5.1\r"
)


def test_a_message_writing_two_patients_gets_no_provenance() -> None:
    raw = (
        MSH.format(event="A24", structure="ADT_A24", cid="LINK1")
        + "EVN|A24|20240105081500\r"
        + "PID|1||111^^^HOSP^MR||Doe^Jane||19700215|F\r"
        + "PID|2||222^^^HOSP^MR||Roe^Ann||19800215|F\r"
    )
    bundle = _bundle(raw)
    kinds = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    if kinds["Patient"] > 1:
        assert kinds["Provenance"] == 0  # one Provenance would sit in both compartments
        assert kinds["MessageHeader"] == 1
    else:  # pragma: no cover - then A24 writes one Patient and gets its Provenance
        assert kinds["Provenance"] == 1


def test_rol_and_prt_become_practitioner_roles() -> None:
    raw = (
        MSH.format(event="A01", structure="ADT_A01", cid="ROL1")
        + "EVN|A01|20240105081500\r"
        + "PID|1||333^^^HOSP^MR||Doe^Jane||19700215|F\r"
        + "PV1|1|I|W1^R2^B3||||1234^Welby^Marcus|||MED||||7|||||V9^^^HOSP\r"
        + "ROL|R1^HOSP|AD|AT^Attending^HL70443|5678^Kildare^James^^^Dr^^^HOSP|20240105080000"
        + "|||||||^WPN^PH^^^555^1234567\r"
        + "PRT|P1^HOSP|AD||PP^Primary Care Provider^HL70443|9012^Casey^Ben^^^^^^HOSP"
        + "|GP^General practice|||||||||^WPN^Internet^ben@example.org\r"
    )
    bundle = _bundle(raw)
    roles = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "PractitionerRole"]
    assert len(roles) == 2
    by_code = {r["resource"]["code"][0]["coding"][0]["code"]: r for r in roles}
    urls = _by_url(bundle)
    attending = by_code["AT"]["resource"]
    doctor = urls[attending["practitioner"]["reference"]]["resource"]
    assert doctor["identifier"][0]["value"] == "5678"
    assert attending["period"] == {"start": "2024-01-05T08:00:00+01:00"}
    assert attending["telecom"][0]["value"] == "555 1234567"
    gp = by_code["PP"]["resource"]
    assert gp["specialty"][0]["coding"][0]["code"] == "GP"
    assert gp["telecom"][0]["value"] == "ben@example.org"
    encounter = _one(bundle, "Encounter")["resource"]
    linked = [p for p in encounter["participant"] if "PractitionerRole" in str(p) or
              p["individual"]["reference"] == by_code["AT"]["fullUrl"]]  # fmt: skip
    assert linked and linked[0]["type"][0]["coding"][0]["code"] == "AT"
