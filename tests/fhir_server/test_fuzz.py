"""Hypothesis throws malformed JSON and invalid resources at a running server: every answer is a
4xx OperationOutcome, never a 5xx, and nothing invalid is stored."""

from __future__ import annotations

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=20,
)
patient_fields = st.sampled_from(
    [
        "gender",
        "birthDate",
        "active",
        "name",
        "identifier",
        "telecom",
        "deceasedBoolean",
        "id",
        "meta",
        "bogus",
    ]
)
invalid_patients = st.dictionaries(patient_fields, json_values, min_size=1, max_size=4).map(
    lambda d: {"resourceType": "Patient", **d}
)

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith("application/fhir+json")
        assert resp.json()["resourceType"] == "OperationOutcome"


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_get_4xx(client, raw: bytes):
    resp = client.post("/Patient", content=raw, headers={"Content-Type": "application/fhir+json"})
    _check(resp)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        assert resp.status_code == 400
        return
    if not (isinstance(body, dict) and body.get("resourceType") == "Patient"):
        assert 400 <= resp.status_code < 500


@FUZZ
@given(body=invalid_patients)
def test_random_patients_never_500(client, body: dict):
    resp = client.post("/Patient", json=body)
    _check(resp)
    if resp.status_code == 201:
        # whatever was accepted must read back and re-validate cleanly
        stored = client.get(resp.headers["location"].split("/_history")[0].split("/fhir/")[1])
        assert stored.status_code == 200
        check = client.post("/Patient/$validate", json=stored.json()).json()
        assert all(i["severity"] not in ("error", "fatal") for i in check["issue"])


@FUZZ
@given(body=json_values)
def test_random_bundles_never_500(client, body):
    resp = client.post(
        "/",
        content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": body}),
        headers={"Content-Type": "application/fhir+json"},
    )
    _check(resp)


def test_huge_integer_is_400(client):
    resp = client.post(
        "/Patient",
        content=b'{"resourceType": "Patient", "multipleBirthInteger": 99999999999999999999999}',
        headers={"Content-Type": "application/fhir+json"},
    )
    _check(resp)
    assert resp.status_code == 400
