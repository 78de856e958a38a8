"""Bulk Data Access 2.0 items the SMART Bulk Data Tester (bdt) checks, over HTTP on both
databases (issue 16): v1 scopes granted in their v1 form, scopes for unknown types or actions
refused, downloads checked against the downloading token's scopes, a kick-off without Accept,
a future ``_since`` refused, ``_elements``, ``includeAssociatedData``, and the operation names of
the CapabilityStatement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from tests.fhir_server.auth.smart import bearer, make_client
from tests.fhir_server.test_bulk_export import ASYNC, download, kickoff, poll
from tests.servers import system_token

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


def _token(server, client_id: str, secret: str, scope: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        f"{server.root}/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
        timeout=30,
    )


def _as(server, scope: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    token = system_token(server.database_url, server.root, scope=scope)
    return httpx.Client(base_url=server.fhir, headers=bearer(token), timeout=60)


@pytest.fixture
def record(client: httpx.Client) -> dict:
    """A patient with an observation, a Provenance targeting the observation, and an unrelated
    Provenance."""
    tag = uuid.uuid4().hex[:10]

    def make(body: dict) -> str:
        resp = client.post(f"/{body['resourceType']}", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    pid = make({"resourceType": "Patient", "identifier": [{"value": tag}]})
    obs = make(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": tag},
            "subject": {"reference": f"Patient/{pid}"},
        }
    )
    now = datetime.now(UTC).isoformat()
    prov = make(
        {
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{obs}"}],
            "recorded": now,
            "agent": [{"who": {"display": "lab"}}],
        }
    )
    other = make(
        {
            "resourceType": "Provenance",
            "target": [{"reference": "Observation/not-exported"}],
            "recorded": now,
            "agent": [{"who": {"display": "elsewhere"}}],
        }
    )
    return {"patient": pid, "obs": obs, "prov": prov, "other_prov": other}


def test_v1_scopes_are_granted_in_v1_form(server):
    client_id, secret = make_client(
        server, "confidential-symmetric", "system/*.cruds", redirect=None
    )
    resp = _token(server, client_id, secret, "system/*.read")
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"].split() == ["system/*.read"]
    access = resp.json()["access_token"]
    assert (
        httpx.get(f"{server.fhir}/Patient", headers=bearer(access), timeout=30).status_code == 200
    )
    # v2 asked, v2 granted; v1 narrowed by the client's ceiling is written as what it became
    assert (
        _token(server, client_id, secret, "system/Patient.rs").json()["scope"]
        == "system/Patient.rs"
    )
    narrow_id, narrow_secret = make_client(
        server, "confidential-symmetric", "system/Patient.r", redirect=None
    )
    narrowed = _token(server, narrow_id, narrow_secret, "system/Patient.read").json()
    assert narrowed["scope"] == "system/Patient.r"


@pytest.mark.parametrize(
    "scope",
    ["system/UnknownResource.read", "system/Patient.unknownAction", "system/*.read system/Foo.rs"],
)
def test_invalid_scopes_are_refused(server, scope):
    client_id, secret = make_client(
        server, "confidential-symmetric", "system/*.cruds", redirect=None
    )
    resp = _token(server, client_id, secret, scope)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_scope"


def test_kickoff_without_accept_and_future_since(server, client, record):
    resp = client.get("/$export", params={"_type": "Patient"}, headers={"Prefer": "respond-async"})
    assert resp.status_code == 202, resp.text
    poll(client, resp.headers["content-location"])
    # an Accept that admits no application/fhir+json (bdt's "Requires Accept header" sends
    # application/json) is refused with an OperationOutcome; a wildcard is fine; lenient: served
    for accept, status in (
        ("application/json", 406),
        ("application/fhir+xml", 406),
        ("*/*", 202),
        ("application/json, application/fhir+json;q=0.5", 202),
    ):
        resp = client.post(
            "/Patient/$export",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "_type", "valueString": "Patient"}],
            },
            headers={"Prefer": "respond-async", "Accept": accept},
        )
        assert resp.status_code == status, (accept, resp.text)
        if status == 406:
            assert resp.json()["resourceType"] == "OperationOutcome"
        else:  # started: not waited for
            assert client.delete(resp.headers["content-location"]).status_code == 202
    lenient = {"Prefer": "respond-async, handling=lenient", "Accept": "application/json"}
    resp = client.get("/$export", params={"_type": "Patient"}, headers=lenient)
    assert resp.status_code == 202, resp.text
    assert client.delete(resp.headers["content-location"]).status_code == 202
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    refused = client.get("/$export", params={"_since": future}, headers=ASYNC)
    assert refused.status_code == 400
    assert "future" in refused.json()["issue"][0]["diagnostics"]


def test_download_rechecks_scopes_of_the_same_client(server, record):
    client_id, secret = make_client(
        server, "confidential-symmetric", "system/Patient.rs system/Observation.rs", redirect=None
    )
    full = _token(server, client_id, secret, "system/Patient.rs system/Observation.rs").json()
    with httpx.Client(base_url=server.fhir, headers=bearer(full["access_token"]), timeout=60) as c:
        manifest = poll(c, kickoff(c, "/$export", params={"_type": "Patient,Observation"}))
        files = {o["type"]: o["url"] for o in manifest["output"]}
    less = _token(server, client_id, secret, "system/Patient.rs").json()
    with httpx.Client(base_url=server.fhir, headers=bearer(less["access_token"]), timeout=60) as c:
        assert c.get(files["Patient"]).status_code == 200
        refused = c.get(files["Observation"])
        assert refused.status_code == 403
        assert refused.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_elements(client, record, method):
    params = {"_type": "Patient,Observation", "_elements": "id,Observation.status"}
    if method == "GET":
        url = kickoff(client, "/Patient/$export", params=params)
    else:
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": k, "valueString": v} for k, v in params.items()],
        }
        url = kickoff(client, "/Patient/$export", method="POST", json=body)
    out = download(client, poll(client, url))
    obs = next(o for o in out["Observation"] if o["id"] == record["obs"])
    # the elements asked for (and the mandatory ones, as search's _elements keeps them)
    assert {"resourceType", "id", "meta", "status"} <= set(obs) and "subject" not in obs
    assert SUBSETTED in obs["meta"]["tag"]
    patient = next(p for p in out["Patient"] if p["id"] == record["patient"])
    assert "identifier" not in patient and SUBSETTED in patient["meta"]["tag"]


@pytest.mark.parametrize("value", ["Patient.name.given", "name given", "Nonsense.id", ""])
def test_bad_elements(client, value):
    resp = client.get("/$export", params={"_elements": value}, headers=ASYNC)
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["code"] == "invalid"


def test_include_associated_provenance(client, record):
    url = kickoff(
        client,
        f"/Patient/{record['patient']}/$export",
        params={"_type": "Observation", "includeAssociatedData": "RelevantProvenanceResources"},
    )
    manifest = poll(client, url)
    out = download(client, manifest)
    assert {o["id"] for o in out["Observation"]} == {record["obs"]}
    assert {p["id"] for p in out["Provenance"]} == {record["prov"]}
    assert any(o["url"].endswith("associated-Provenance-1.ndjson") for o in manifest["output"])
    # values not supported: 400 (lenient: reported in the manifest)
    refused = client.get(
        "/$export", params={"includeAssociatedData": "SomeCustomValue"}, headers=ASYNC
    )
    assert refused.status_code == 400
    assert "SomeCustomValue" in refused.json()["issue"][0]["diagnostics"]


def test_include_latest_provenance(client, record):
    """LatestProvenanceResources: of the Provenance resources targeting an exported resource,
    only the newest; both values together (comma-separated, as bdt sends them, or repeated):
    every one, as RelevantProvenanceResources alone."""
    newer = client.post(
        "/Provenance",
        json={
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{record['obs']}"}],
            "recorded": datetime.now(UTC).isoformat(),
            "agent": [{"who": {"display": "reviewer"}}],
        },
    ).json()["id"]
    path = f"/Patient/{record['patient']}/$export"
    latest = {"_type": "Observation", "includeAssociatedData": "LatestProvenanceResources"}
    out = download(client, poll(client, kickoff(client, path, params=latest)))
    assert {p["id"] for p in out["Provenance"]} == {newer}
    for both in (
        {"includeAssociatedData": "LatestProvenanceResources,RelevantProvenanceResources"},
        [
            ("includeAssociatedData", "LatestProvenanceResources"),
            ("includeAssociatedData", "RelevantProvenanceResources"),
        ],
    ):
        params = httpx.QueryParams(both).merge({"_type": "Observation"})
        out = download(client, poll(client, kickoff(client, path, params=params)))
        assert {p["id"] for p in out["Provenance"]} == {newer, record["prov"]}


def test_include_associated_needs_provenance_scope(server, record):
    with _as(server, "system/Observation.rs") as c:
        resp = c.get(
            "/$export",
            params={"_type": "Observation", "includeAssociatedData": "RelevantProvenanceResources"},
            headers=ASYNC,
        )
        assert resp.status_code == 403, resp.text


def test_capability_statement_operation_names(client):
    cs = client.get("/metadata").json()
    ops = {o["name"]: o["definition"] for o in cs["rest"][0]["operation"]}
    bulk = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
    assert ops["export"] == f"{bulk}/export"
    assert ops["patient-export"] == f"{bulk}/patient-export"
    assert ops["group-export"] == f"{bulk}/group-export"
    # per type as well, by the invoked name and by the OperationDefinition's code (bdt finds
    # Patient- and Group-level export only by the code)
    for res_type, code in (("Patient", "patient-export"), ("Group", "group-export")):
        entry = next(r for r in cs["rest"][0]["resource"] if r["type"] == res_type)
        pairs = {(o["name"], o["definition"]) for o in entry["operation"]}
        assert {("export", f"{bulk}/{code}"), (code, f"{bulk}/{code}")} <= pairs
    assert orjson.dumps(cs)  # still one JSON document


def test_status_errors_are_plain_json(client, record):
    """IG "Response - Error Status": Content-Type application/json, an OperationOutcome body,
    whatever the Accept (bdt parses only application/json): a cancelled job's status URL, a
    second DELETE of it, an unknown job."""
    url = kickoff(client, f"/Patient/{record['patient']}/$export", params={"_type": "Patient"})
    assert client.delete(url).status_code == 202
    for method in ("GET", "DELETE"):
        for accept in ("application/json", "application/fhir+xml"):
            resp = client.request(method, url, headers={"Accept": accept})
            assert resp.status_code == 404, resp.text
            assert resp.headers["content-type"] == "application/json"
            assert resp.json()["resourceType"] == "OperationOutcome"
    unknown = client.get(url.rsplit("/", 1)[0] + "/no-such-job")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"


def test_relative_attachment_urls_are_exported_absolute(server, client):
    """IG "Attachments": the url element SHALL be absolute. A relative Attachment.url, wherever
    the R4 type model puts an Attachment (DocumentReference.content.attachment, Media.content,
    DiagnosticReport.presentedForm, Patient.photo, an extension's valueAttachment, a contained
    resource's), is resolved against the FHIR base in the file; an absolute one, and any other
    ``url`` element, stay as they are, and so does the stored resource."""
    tag = uuid.uuid4().hex[:10]
    absolute = f"https://images.example.org/{tag}.png"
    bodies = {
        "Patient": {
            "resourceType": "Patient",
            "photo": [{"contentType": "image/png", "url": absolute}],
            "extension": [
                {
                    "url": "http://example.org/fhir/StructureDefinition/consent-scan",
                    "valueAttachment": {"contentType": "application/pdf", "url": f"Binary/{tag}-e"},
                }
            ],
        },
        "DocumentReference": {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{tag}-d"}}],
        },
        "Media": {
            "resourceType": "Media",
            "status": "completed",
            "content": {"contentType": "image/jpeg", "url": f"Binary/{tag}-m"},
        },
        "DiagnosticReport": {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": tag},
            "contained": [
                {
                    "resourceType": "Media",
                    "id": "scan",
                    "status": "completed",
                    "content": {"url": f"Binary/{tag}-c"},
                }
            ],
            "presentedForm": [{"contentType": "application/pdf", "url": f"Binary/{tag}-r"}],
        },
    }
    ids = {}
    for res_type, body in bodies.items():
        resp = client.post(f"/{res_type}", json=body)
        assert resp.status_code == 201, resp.text
        ids[res_type] = resp.json()["id"]
    params = [("_type", ",".join(bodies))] + [
        ("_typeFilter", f"{t}?_id={i}") for t, i in ids.items()
    ]
    exported = download(client, poll(client, kickoff(client, "/$export", params=params)))
    got = {t: rows for t, rows in exported.items()}
    assert {t: [r["id"] for r in rows] for t, rows in got.items()} == {
        t: [i] for t, i in ids.items()
    }
    base = server.fhir
    [patient], [doc], [media], [report] = (got[t] for t in bodies)
    assert patient["photo"][0]["url"] == absolute
    assert patient["extension"][0]["url"] == bodies["Patient"]["extension"][0]["url"]
    assert patient["extension"][0]["valueAttachment"]["url"] == f"{base}/Binary/{tag}-e"
    assert doc["content"][0]["attachment"]["url"] == f"{base}/Binary/{tag}-d"
    assert media["content"]["url"] == f"{base}/Binary/{tag}-m"
    assert report["presentedForm"][0]["url"] == f"{base}/Binary/{tag}-r"
    assert report["contained"][0]["content"]["url"] == f"{base}/Binary/{tag}-c"
    # the stored resources are not changed
    stored = client.get(f"/DocumentReference/{ids['DocumentReference']}").json()
    assert stored["content"][0]["attachment"]["url"] == f"Binary/{tag}-d"
    assert stored["meta"]["versionId"] == doc["meta"]["versionId"]
