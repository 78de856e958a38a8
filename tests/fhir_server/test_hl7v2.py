"""HL7 v2 into a running Hearth, on SQLite and PostgreSQL: ``POST /fhir/$hl7v2`` (authorized,
audited) and the MLLP listener over a real socket. Each message is applied as one transaction
and answered by its ACK; AE/AR leave nothing behind; the listener survives garbage and
half-open connections."""

from __future__ import annotations

import socket
import time
import uuid

import httpx
import pytest

from tests.servers import database_url, free_port, start_server, system_token

ER7 = {"content-type": "x-application/hl7-v2+er7"}
AUTHORITY = "urn:hearth:hl7v2:assigner:HOSP"


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def adt(
    event: str, mrn: str, *, visit: str = "", family: str = "Doe", cid: str = "", extra: str = ""
) -> str:
    pv1 = f"PV1|1|I|W1^R2^B3||||1234^Welby^Marcus|||MED||||7|||||{visit}^^^HOSP|||||||||||||||||||||||||20240105080000"
    if event == "A03":
        pv1 += "|20240107120000"
    return (
        f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||ADT^{event}^ADT_A01|{cid or _uid()}|P|2.5.1\r"
        f"EVN|{event}|20240105081500\r"
        f"PID|1||{mrn}^^^HOSP^MR||{family}^Jane^Q||19700215|F|||1 Main St^^Town^ST^12345||555-1234\r"
        f"{extra}{pv1}\r"
    )


def oru(mrn: str, filler: str, *, cid: str = "", glucose: str = "5.4", status: str = "F") -> str:
    return (
        f"MSH|^~\\&|LAB|HOSP|HEARTH|HEARTH|20240105100000+0100||ORU^R01^ORU_R01|{cid or _uid()}|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19700215|F\r"
        f"OBR|1|P{filler}|{filler}^LAB|24320-4^Basic metabolic panel^LN|||20240105090000|||||||||||||||20240105095500|||{status}\r"
        f"OBX|1|NM|2345-7^Glucose^LN||{glucose}|mmol/L^^UCUM|3.9-5.5|N|||{status}|||20240105090000\r"
        f"OBX|2|NM|2823-3^Potassium^LN||6.1|mmol/L|3.5-5.1|H|||{status}\r"
        f"NTE|1||Haemolysed \\T\\ repeated\r"
        f"OBX|3|ST|8251-1^Comment^LN||See note|||||||{status}\r"
    )


def msa(ack: str) -> list[str]:
    segments = {s.split("|", 1)[0]: s.split("|") for s in ack.strip("\r").split("\r")}
    assert ack.startswith("MSH|^~\\&|"), ack
    return segments["MSA"]


def post(client: httpx.Client, message: str | bytes, **headers: str) -> httpx.Response:
    return client.post("/$hl7v2", content=message, headers={**ER7, **headers})


def one(client: httpx.Client, res_type: str, query: str) -> dict:
    entries = client.get(f"/{res_type}?{query}").json().get("entry", [])
    assert len(entries) == 1, (res_type, query, len(entries))
    return entries[0]["resource"]


def count(client: httpx.Client, res_type: str, query: str) -> int:
    return client.get(f"/{res_type}?{query}&_summary=count").json()["total"]


def test_admit_update_discharge(client: httpx.Client) -> None:
    mrn, visit = _uid(), _uid()
    cid = _uid()
    r = post(client, adt("A01", mrn, visit=visit, cid=cid))
    assert r.status_code == 200 and r.headers["content-type"].startswith("x-application/hl7-v2+er7")
    assert msa(r.text)[:3] == ["MSA", "AA", cid]
    patient = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
    assert patient["name"][0]["family"] == "Doe" and patient["birthDate"] == "1970-02-15"
    assert patient["gender"] == "female"
    assert patient["telecom"] == [{"value": "555-1234", "system": "phone", "use": "home"}]
    encounter = one(client, "Encounter", f"identifier={AUTHORITY}|{visit}")
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    assert encounter["period"]["start"] == "2024-01-05T08:00:00+01:00"

    assert msa(post(client, adt("A08", mrn, visit=visit, family="Smith")).text)[1] == "AA"
    updated = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
    assert updated["id"] == patient["id"] and updated["name"][0]["family"] == "Smith"
    assert updated["meta"]["versionId"] == "2"

    assert msa(post(client, adt("A03", mrn, visit=visit, family="Smith")).text)[1] == "AA"
    finished = one(client, "Encounter", f"identifier={AUTHORITY}|{visit}")
    assert finished["id"] == encounter["id"]
    assert finished["status"] == "finished"
    assert finished["period"]["end"] == "2024-01-07T12:00:00+01:00"
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 1


def test_results_and_corrections(client: httpx.Client) -> None:
    mrn, filler = _uid(), _uid()
    post(client, adt("A04", mrn, family="Lab"))
    r = post(client, oru(mrn, filler, status="P"))
    assert msa(r.text)[1] == "AA", r.text
    patient = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
    assert patient["name"][0]["family"] == "Lab"  # a result never rewrites demographics
    report = one(client, "DiagnosticReport", f"identifier=urn:hearth:hl7v2:assigner:LAB|{filler}")
    assert report["status"] == "preliminary"
    assert report["subject"]["reference"] == f"Patient/{patient['id']}"
    assert len(report["result"]) == 3
    glucose = one(
        client, "Observation", f"subject=Patient/{patient['id']}&code=http://loinc.org|2345-7"
    )
    assert glucose["valueQuantity"] == {
        "value": 5.4,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    assert glucose["referenceRange"][0]["low"]["value"] == 3.9
    assert glucose["effectiveDateTime"] == "2024-01-05T09:00:00+01:00"
    assert f"Observation/{glucose['id']}" in {x["reference"] for x in report["result"]}
    potassium = one(
        client, "Observation", f"subject=Patient/{patient['id']}&code=http://loinc.org|2823-3"
    )
    assert potassium["interpretation"][0]["coding"][0]["code"] == "H"
    assert potassium["note"] == [{"text": "Haemolysed & repeated"}]
    assert potassium["effectiveDateTime"] == "2024-01-05T09:00:00+01:00"  # from OBR-7

    # the final, corrected result replaces the preliminary one: no duplicates
    assert msa(post(client, oru(mrn, filler, glucose="5.9", status="C")).text)[1] == "AA"
    assert count(client, "Observation", f"subject=Patient/{patient['id']}") == 3
    corrected = one(
        client, "Observation", f"subject=Patient/{patient['id']}&code=http://loinc.org|2345-7"
    )
    assert corrected["id"] == glucose["id"] and corrected["valueQuantity"]["value"] == 5.9
    assert corrected["status"] == "corrected"
    assert (
        one(client, "DiagnosticReport", f"identifier=urn:hearth:hl7v2:assigner:LAB|{filler}")[
            "status"
        ]
        == "corrected"
    )


def test_merge(client: httpx.Client) -> None:
    prior, survivor = _uid(), _uid()
    post(client, adt("A01", prior, family="Old"))
    post(client, adt("A01", survivor, family="New"))
    merge = (
        f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500||ADT^A40^ADT_A39|{_uid()}|P|2.5.1\r"
        f"EVN|A40|20240105081500\rPID|1||{survivor}^^^HOSP^MR||New^Jane||19700215|F\r"
        f"MRG|{prior}^^^HOSP^MR\r"
    )
    assert msa(post(client, merge).text)[1] == "AA"
    old = one(client, "Patient", f"identifier={AUTHORITY}|{prior}")
    new = one(client, "Patient", f"identifier={AUTHORITY}|{survivor}")
    assert old["active"] is False
    assert old["name"][0]["family"] == "Old"  # the prior record keeps its content
    assert old["link"] == [{"other": {"reference": f"Patient/{new['id']}"}, "type": "replaced-by"}]
    assert new["link"] == [{"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}]

    # an unknown prior patient: AE, and the survivor is not created either
    stranger = _uid()
    bad = merge.replace(survivor, stranger).replace(prior, _uid())
    r = post(client, bad)
    fields = msa(r.text)
    assert fields[1] == "AE"
    assert "ERR|" in r.text
    assert count(client, "Patient", f"identifier={AUTHORITY}|{stranger}") == 0


def test_rejected_messages_store_nothing(client: httpx.Client) -> None:
    mrn = _uid()
    cid = _uid()
    unsupported = adt("Z99", mrn, cid=cid)  # a site-defined event Hearth has no mapping for
    r = post(client, unsupported)
    assert msa(r.text)[:3] == ["MSA", "AR", cid]
    assert "201^Unsupported event code^HL70357" in r.text
    assert "event ADT\\S\\Z99 is not supported" in r.text  # the ERR names it (^ escaped: \S\)
    assert r.headers["x-hl7-ack-code"] == "AR"
    r = post(client, b"\x00\xffnot a message at all")
    assert msa(r.text)[:3] == ["MSA", "AR", ""]
    bad_date = oru(mrn, _uid()).replace("|||20240105090000\r", "|||2024010599\r")
    r = post(client, bad_date)
    assert msa(r.text)[1] == "AE" and "102^Data type error" in r.text
    missing_code = oru(mrn, _uid()).replace("24320-4^Basic metabolic panel^LN", "")
    r = post(client, missing_code)
    assert msa(r.text)[1] == "AE" and "OBR^1^4" in r.text
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 0


def test_http_edges(server, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    rest = client.get("/metadata").json()["rest"][0]
    assert "hl7v2" in {op["name"] for op in rest["operation"]}
    assert client.get("/$hl7v2").status_code == 405
    r = client.post("/$hl7v2", json={"resourceType": "Patient"})
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    r = httpx.post(f"{server.fhir}/$hl7v2", content=adt("A01", _uid()), headers=ER7)
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    mrn = _uid()
    narrow = system_token(server.database_url, server.root, scope="system/Patient.rs")
    r = httpx.post(
        f"{server.fhir}/$hl7v2",
        content=adt("A01", mrn),
        headers={**ER7, "Authorization": f"Bearer {narrow}"},
    )
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 0
    # text/plain is taken too, and the write is audited under the caller's client
    assert msa(post(client, adt("A01", mrn), **{"content-type": "text/plain"}).text)[1] == "AA"
    patient = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
    # the patient's own audit trail (a shared server: the log's first page may predate it)
    events = client.get(
        "/AuditEvent", params={"entity": f"Patient/{patient['id']}", "_count": 1000}
    ).json()
    refs = {
        ent.get("what", {}).get("reference")
        for e in events.get("entry", [])
        if any(s.get("code") == "transaction" for s in e["resource"].get("subtype", []))
        for ent in e["resource"].get("entity", [])
    }
    assert f"Patient/{patient['id']}" in refs


# --- MLLP over a real socket ---------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mllp_hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"mllp-{request.param}"))
    port = free_port()
    running = start_server(request.param, url, mllp_port=port)
    yield running, port
    running.stop()
    cleanup()


def frame(message: str | bytes) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return b"\x0b" + data + b"\x1c\x0d"


def read_acks(sock: socket.socket, n: int) -> list[str]:
    buf = b""
    sock.settimeout(60)
    while buf.count(b"\x1c\x0d") < n:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before every ACK came"
        buf += chunk
    acks = buf.split(b"\x1c\x0d")[:-1]
    assert all(a.startswith(b"\x0b") for a in acks)
    return [a[1:].decode() for a in acks]


def test_mllp_many_messages_on_one_connection(mllp_hearth) -> None:  # type: ignore[no-untyped-def]
    running, port = mllp_hearth
    mrn, visit, filler = _uid(), _uid(), _uid()
    cids = [_uid() for _ in range(4)]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"stray bytes outside any frame\r\n")  # dropped: nothing to answer
        s.sendall(frame(b"this is not HL7"))
        s.sendall(frame(adt("A01", mrn, visit=visit, cid=cids[0])))
        # one message split across writes, then two in one write
        second = frame(oru(mrn, filler, cid=cids[1]))
        s.sendall(second[:50])
        time.sleep(0.2)
        s.sendall(
            second[50:]
            + frame(adt("Z99", mrn, cid=cids[2]))
            + frame(adt("A03", mrn, visit=visit, cid=cids[3]).replace("\r", "\n"))
        )
        acks = read_acks(s, 5)
    assert [msa(a)[1:3] for a in acks] == [
        ["AR", ""],
        ["AA", cids[0]],
        ["AA", cids[1]],
        ["AR", cids[2]],
        ["AA", cids[3]],
    ]
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as c:
        patient = one(c, "Patient", f"identifier={AUTHORITY}|{mrn}")
        assert one(c, "Encounter", f"identifier={AUTHORITY}|{visit}")["status"] == "finished"
        assert count(c, "Observation", f"subject=Patient/{patient['id']}") == 3
        assert count(c, "DiagnosticReport", f"subject=Patient/{patient['id']}") == 1
        # audited as the listener's client, with the peer's address
        events = c.get("/$audit-log", params={"_count": 1000}).json().get("entry", [])
        clients = {
            agent["who"].get("identifier", {}).get("value")
            for e in events
            if f"Patient/{patient['id']}"
            in {x.get("what", {}).get("reference") for x in e["resource"].get("entity", [])}
            for agent in e["resource"]["agent"]
        }
        assert "hl7v2-mllp:127.0.0.1" in clients


def test_mllp_survives_garbage_and_half_open_connections(mllp_hearth) -> None:  # type: ignore[no-untyped-def]
    running, port = mllp_hearth
    mrn = _uid()
    half = socket.create_connection(("127.0.0.1", port))
    message = frame(adt("A04", mrn))
    half.sendall(message[:40])  # a frame begun and left open
    for junk in (bytes(range(256)) * 4, b"\x0b\x0b\x1c\x1c\x0d", b"\x1c\x0d" * 10):
        with socket.create_connection(("127.0.0.1", port)) as g:
            g.sendall(junk)
    abrupt = socket.create_connection(("127.0.0.1", port))
    abrupt.sendall(b"\x0bMSH|^~\\&|half")
    abrupt.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    abrupt.close()  # reset mid-frame
    with socket.create_connection(("127.0.0.1", port)) as s:
        cid = _uid()
        s.sendall(frame(adt("A01", _uid(), cid=cid)))
        assert msa(read_acks(s, 1)[0])[1:3] == ["AA", cid]
    half.sendall(message[40:])  # the half-open connection is still served
    assert msa(read_acks(half, 1)[0])[1] == "AA"
    half.close()
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as c:
        assert count(c, "Patient", f"identifier={AUTHORITY}|{mrn}") == 1


def test_each_message_is_recorded_once_with_its_provenance(client: httpx.Client) -> None:
    """MessageHeader and Provenance (mappings/hl7v2/provenance.py) are stored with the
    message's resources; the same message sent again updates them instead of adding more."""
    mrn, visit, cid = _uid(), _uid(), _uid()
    message = adt("A01", mrn, visit=visit, cid=cid)
    for _ in range(2):
        assert msa(post(client, message).text)[1] == "AA"
    patient = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
    encounter = one(client, "Encounter", f"identifier={AUTHORITY}|{visit}")
    provenances = client.get("/Provenance", params={"target": f"Patient/{patient['id']}"}).json()
    assert len(provenances.get("entry", [])) == 1
    prov = provenances["entry"][0]["resource"]
    targets = {t["reference"] for t in prov["target"]}
    assert {f"Patient/{patient['id']}", f"Encounter/{encounter['id']}"} <= targets
    assert prov["meta"]["versionId"] == "1"  # sent again: the same content, no new version
    header_ref = next(e["what"]["reference"] for e in prov["entity"] if "MessageHeader" in str(e))
    header = client.get(f"/{header_ref}").json()
    assert header["eventCoding"]["code"] == "A01"
    assert f"Patient/{patient['id']}" in {f["reference"] for f in header["focus"]}
    sender = client.get(f"/{header['sender']['reference']}").json()
    assert sender["resourceType"] == "Organization" and sender["name"] == "HOSP"
    app = next(e["what"]["reference"] for e in prov["entity"] if "Device" in str(e))
    assert client.get(f"/{app}").json()["deviceName"][0]["name"] == "ADT"
    assert (
        count(client, "Organization", "identifier=urn:ietf:rfc:3986|urn:hearth:hl7v2:assigner:HOSP")
        == 1
    )


def test_a_patient_token_sees_its_own_provenance_and_no_message_header(server, client) -> None:  # type: ignore[no-untyped-def]
    """The message record over the real edge with patient-context tokens: the Provenance of what
    a message wrote about the patient is in that patient's compartment; MessageHeaders (in no
    compartment) and another patient's Provenance stay out of sight, by read and by search."""
    from tests.fhir_server.auth.smart import client_token

    ids = {}
    for mrn in (_uid(), _uid()):
        assert msa(post(client, adt("A01", mrn, visit=_uid())).text)[1] == "AA"
        ids[mrn] = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")["id"]
    mine, other = ids.values()
    theirs = client.get("/Provenance", params={"target": f"Patient/{other}"}).json()
    other_prov = theirs["entry"][0]["resource"]
    header_ref = next(
        e["what"]["reference"] for e in other_prov["entity"] if "MessageHeader" in str(e)
    )
    scope = "patient/Provenance.rs patient/MessageHeader.rs patient/Patient.rs"
    with httpx.Client(
        base_url=server.fhir, headers=client_token(server, scope, patient=mine), timeout=60
    ) as patient:
        own = patient.get("/Provenance", params={"target": f"Patient/{mine}"})
        assert own.status_code == 200 and len(own.json()["entry"]) == 1
        assert patient.get(f"/Provenance/{other_prov['id']}").status_code == 404
        found = patient.get("/Provenance", params={"target": f"Patient/{other}"}).json()
        assert not found.get("entry")
        assert patient.get(f"/{header_ref}").status_code == 404
        assert not patient.get("/MessageHeader").json().get("entry")


def test_account_and_visit_moves_and_merges(client: httpx.Client) -> None:
    """A44 / A45 re-point the Account and Encounter to the PID patient, A41 retires the prior
    account behind a Linkage; an unknown record is AE 204 at its MRG field, nothing written."""
    old, new, acc, acc2, visit = _uid(), _uid(), _uid(), _uid(), _uid()
    pid18 = "|" * 5 + f"{acc}^^^HOSP\r"
    assert msa(post(client, adt("A01", old, visit=visit).replace("555-1234\r", "555-1234" + pid18)).text)[1] == "AA"  # fmt: skip
    assert msa(post(client, adt("A04", new, family="New")).text)[1] == "AA"

    def moved(event: str, mrg: str, pid_tail: str = "") -> str:
        return (
            f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105091500||ADT^{event}|{_uid()}|P|2.5.1\r"
            f"EVN|{event}|20240105091500\rPID|1||{new}^^^HOSP^MR||New^Jane||19700215|F{pid_tail}\r"
            f"MRG|{mrg}\r"
        )

    a44 = moved("A44", f"{old}^^^HOSP^MR||{acc}^^^HOSP")
    assert msa(post(client, a44).text)[1] == "AA"
    target = one(client, "Patient", f"identifier={AUTHORITY}|{new}")
    account = one(client, "Account", f"identifier={AUTHORITY}|{acc}")
    assert account["subject"] == [{"reference": f"Patient/{target['id']}"}]
    a45 = moved("A45", f"{old}^^^HOSP^MR||||{visit}^^^HOSP")
    assert msa(post(client, a45).text)[1] == "AA"
    encounter = one(client, "Encounter", f"identifier={AUTHORITY}|{visit}")
    assert encounter["subject"] == {"reference": f"Patient/{target['id']}"}
    assert encounter["location"][0]["location"]["display"] == "W1, R2, B3"  # the visit kept
    assert msa(post(client, a45).text)[1] == "AA"  # sent again: nothing changes
    assert one(client, "Encounter", f"identifier={AUTHORITY}|{visit}")["meta"] == encounter["meta"]

    a41 = moved("A41", f"{new}^^^HOSP^MR||{acc}^^^HOSP", "|" * 10 + f"{acc2}^^^HOSP")
    assert msa(post(client, a41).text)[1] == "AA"
    prior = one(client, "Account", f"identifier={AUTHORITY}|{acc}")
    survivor = one(client, "Account", f"identifier={AUTHORITY}|{acc2}")
    assert prior["status"] == "inactive" and survivor["status"] == "active"
    links = client.get(f"/Linkage?item=Account/{prior['id']}").json().get("entry", [])
    assert [[i["resource"]["reference"] for i in e["resource"]["item"]] for e in links] == [
        [f"Account/{survivor['id']}", f"Account/{prior['id']}"]
    ]

    stranger, gone = _uid(), _uid()
    r = post(client, moved("A45", f"{old}^^^HOSP^MR||||{gone}^^^HOSP").replace(new, stranger))
    assert msa(r.text)[1] == "AE"
    assert "MRG^1^5|204^Unknown key identifier^HL70357|E" in r.text
    assert count(client, "Patient", f"identifier={AUTHORITY}|{stranger}") == 0


def test_mllp_enhanced_mode_acknowledgments(mllp_hearth) -> None:  # type: ignore[no-untyped-def]
    """MSH-15 / MSH-16 (HL7 v2.5.1 2.9.3): the accept ACK (CA / CR / CE) and the application
    ACK each as asked, in order, on the same connection; original mode without them."""
    _running, port = mllp_hearth
    mrn, cids = _uid(), [_uid() for _ in range(6)]

    def enhanced(event: str, cid: str, accept: str, application: str) -> str:
        return adt(event, mrn, cid=cid).replace(
            "|P|2.5.1\r", f"|P|2.5.1|||{accept}|{application}\r", 1
        )

    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(frame(enhanced("A01", cids[0], "AL", "AL")))  # CA, then AA
        s.sendall(frame(enhanced("Z99", cids[1], "AL", "AL")))  # CR, and no application ACK
        s.sendall(frame(enhanced("A08", cids[2], "NE", "ER")))  # nothing: applied, no error
        s.sendall(frame(enhanced("A08", cids[3], "XX", "AL")))  # CE 103 at MSH-15
        bad = enhanced("A08", cids[4], "ER", "ER").replace("|19700215|", "|1970021599|")
        s.sendall(frame(bad))  # committed (no CA asked), AE
        s.sendall(frame(adt("A08", mrn, cid=cids[5])))  # original mode
        acks = read_acks(s, 6)
    assert [msa(a)[1:3] for a in acks] == [
        ["CA", cids[0]],
        ["AA", cids[0]],
        ["CR", cids[1]],
        ["CE", cids[3]],
        ["AE", cids[4]],
        ["AA", cids[5]],
    ]
    assert "MSH^1^15|103^Table value not found^HL70357|E" in acks[3]
    assert all(a.split("\r")[0].endswith("|NE|NE") for a in acks[:5])  # ACKs are not acked
    assert acks[5].split("\r")[0].endswith("|2.5.1")


def test_http_enhanced_mode(client: httpx.Client) -> None:
    mrn, cid = _uid(), _uid()
    both = adt("A01", mrn, cid=cid).replace("|P|2.5.1\r", "|P|2.5.1|||AL|AL\r", 1)
    r = post(client, both)
    assert r.status_code == 200 and r.headers["x-hl7-commit-code"] == "CA"
    assert r.headers["x-hl7-ack-code"] == "AA"
    assert [line.split("|")[1] for line in r.text.split("\r") if line.startswith("MSA")] == [
        "CA",
        "AA",
    ]
    r = post(client, both.replace("|AL|AL\r", "|NE|NE\r", 1).replace(cid, _uid()))
    assert r.status_code == 204 and r.headers["x-hl7-ack-code"] == "AA" and not r.content


def test_bar_patient_groups_and_order_roles(client: httpx.Client) -> None:
    """BAR^P02: every patient group's account closed; ORC-12 / OBR-32 as PractitionerRoles."""
    first, second, acc1, acc2 = _uid(), _uid(), _uid(), _uid()
    purge = (
        f"MSH|^~\\&|BILL|HOSP|HEARTH|HEARTH|20240105081500||BAR^P02|{_uid()}|P|2.5.1\r"
        "EVN|P02|20240105081500\r"
        f"PID|1||{first}^^^HOSP^MR||One^Ann||19700215|F" + "|" * 10 + f"{acc1}^^^HOSP\r"
        f"PID|2||{second}^^^HOSP^MR||Two^Bea||19710215|F" + "|" * 10 + f"{acc2}^^^HOSP\r"
    )
    assert msa(post(client, purge).text)[1] == "AA"
    for mrn, acc in ((first, acc1), (second, acc2)):
        patient = one(client, "Patient", f"identifier={AUTHORITY}|{mrn}")
        account = one(client, "Account", f"identifier={AUTHORITY}|{acc}")
        assert account["status"] == "inactive"
        assert account["subject"] == [{"reference": f"Patient/{patient['id']}"}]

    filler, orderer = _uid(), _uid()
    message = oru(first, filler).replace(
        "OBR|1|", f"ORC|RE||{filler}^LAB|||||||||{orderer}^Order^Olga^^^^^^HOSP\rOBR|1|", 1
    )
    obr = next(s for s in message.split("\r") if s.startswith("OBR"))
    message = message.replace(obr, obr + "|" * 7 + f"{orderer}&Order&Olga&&&&&&HOSP")
    assert msa(post(client, message).text)[1] == "AA"
    report = one(client, "DiagnosticReport", f"identifier=urn:hearth:hl7v2:assigner:LAB|{filler}")
    order = one(client, "ServiceRequest", f"identifier=urn:hearth:hl7v2:assigner:LAB|{filler}")
    for ref, code in ((report["resultsInterpreter"][0], "PI"), (order["requester"], "OP")):
        role = client.get(f"/{ref['reference']}").json()
        assert role["code"][0]["coding"][0]["code"] == code
        person = client.get(f"/{role['practitioner']['reference']}").json()
        assert person["identifier"][0]["value"] == orderer
