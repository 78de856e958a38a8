"""SMART discovery and Backend Services (client_credentials with a signed JWT assertion) against
a running Hearth, with the IG's example RS384 and ES384 keys."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fhir_server.auth.smart import (
    assertion,
    backend_token,
    bearer,
    ig_keys,
    make_client,
)

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def test_discovery_is_open_and_names_the_endpoints(server):
    conf = httpx.get(f"{server.fhir}/.well-known/smart-configuration").json()
    assert conf["token_endpoint"] == f"{server.root}/auth/token"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
    assert {"launch-ehr", "launch-standalone", "permission-v2"} <= set(conf["capabilities"])
    meta = httpx.get(f"{server.fhir}/metadata").json()
    security = meta["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    ext = next(e for e in security["extension"] if e["url"] == OAUTH_URIS)
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    assert uris["authorize"] == conf["authorization_endpoint"]
    assert uris["token"] == conf["token_endpoint"]
    keys = httpx.get(conf["jwks_uri"]).json()["keys"]
    assert keys and all("d" not in k for k in keys)
    assert httpx.get(f"{server.root}/healthz").status_code == 200


def test_no_token_is_401_with_www_authenticate(server):
    for url in ("/Patient", "/Patient/x", "/_history", "/", "/Observation/$validate"):
        resp = httpx.get(f"{server.fhir}{url}")
        assert resp.status_code == 401, url
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.json()["resourceType"] == "OperationOutcome"
    bad = httpx.get(f"{server.fhir}/Patient", headers=bearer("not-a-token"))
    assert bad.status_code == 401
    basic = httpx.get(f"{server.fhir}/Patient", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    huge = httpx.get(f"{server.fhir}/Patient", headers=bearer("x" * 5000))
    assert huge.status_code == 401
    post = httpx.post(f"{server.fhir}/Patient", json={"resourceType": "Patient"})
    assert post.status_code == 401


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_backend_services_with_ig_keys(server, alg):
    private, public = ig_keys(alg)
    client_id, _ = make_client(
        server, "confidential-asymmetric", "system/*.rs system/Observation.c", jwks=public
    )
    resp = backend_token(
        server, client_id, private, alg, "system/Patient.rs system/Observation.cruds"
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert "refresh_token" not in body
    # asked for Observation.cruds, registered for rs + c: granted no more than that
    assert set(body["scope"].split()) == {"system/Patient.rs", "system/Observation.crs"}
    h = bearer(body["access_token"])
    assert httpx.get(f"{server.fhir}/Patient", headers=h).status_code == 200
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert httpx.post(f"{server.fhir}/Observation", json=obs, headers=h).status_code == 201
    denied = httpx.post(f"{server.fhir}/Patient", json={"resourceType": "Patient"}, headers=h)
    assert denied.status_code == 403
    assert denied.json()["issue"][0]["code"] == "forbidden"


def test_assertion_failures(server):
    private, public = ig_keys("ES384")
    rs_private, _ = ig_keys("RS384")
    client_id, _ = make_client(server, "confidential-asymmetric", "system/*.rs", jwks=public)
    token_url = f"{server.root}/auth/token"

    def post(jwt_value: str) -> httpx.Response:
        return httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": "system/*.rs",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": jwt_value,
            },
        )

    wrong_aud = post(assertion(private, "ES384", client_id, "https://elsewhere/token"))
    assert wrong_aud.status_code == 401 and wrong_aud.json()["error"] == "invalid_client"
    expired = post(assertion(private, "ES384", client_id, token_url, exp_in=-10))
    assert expired.status_code == 401
    too_long = post(assertion(private, "ES384", client_id, token_url, exp_in=3600))
    assert too_long.status_code == 401
    other_key = post(assertion(rs_private, "RS384", client_id, token_url))
    assert other_key.status_code == 401
    once = assertion(private, "ES384", client_id, token_url, jti="same-jti-" + str(time.time()))
    assert post(once).status_code == 200
    replay = post(once)
    assert replay.status_code == 401 and "jti" in replay.json()["error_description"]
    garbage = post("not.a.jwt")
    assert garbage.status_code == 401
    unknown = post(assertion(private, "ES384", "nobody", token_url))
    assert unknown.status_code == 401
    no_scope = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/Patient.cruds",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(private, "ES384", client_id, token_url),
        },
    )
    assert no_scope.status_code == 200 and no_scope.json()["scope"] == "system/Patient.rs"


def test_symmetric_client_and_revocation_and_introspection(server):
    client_id, secret = make_client(server, "confidential-symmetric", "system/*.rs", redirect=None)
    token_url = f"{server.root}/auth/token"
    wrong = httpx.post(
        token_url,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(client_id, "wrong"),
    )
    assert wrong.status_code == 401
    resp = httpx.post(
        token_url,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(client_id, secret),
    )
    assert resp.status_code == 200, resp.text
    access = resp.json()["access_token"]
    info = httpx.post(
        f"{server.root}/auth/introspect", data={"token": access}, auth=(client_id, secret)
    ).json()
    assert info["active"] is True and info["scope"] == "system/*.rs"
    assert info["client_id"] == client_id
    assert httpx.get(f"{server.fhir}/Patient", headers=bearer(access)).status_code == 200
    revoked = httpx.post(
        f"{server.root}/auth/revoke", data={"token": access}, auth=(client_id, secret)
    )
    assert revoked.status_code == 200
    assert httpx.get(f"{server.fhir}/Patient", headers=bearer(access)).status_code == 401
    info = httpx.post(
        f"{server.root}/auth/introspect", data={"token": access}, auth=(client_id, secret)
    ).json()
    assert info == {"active": False}
    anonymous = httpx.post(f"{server.root}/auth/introspect", data={"token": access})
    assert anonymous.status_code == 401


def test_token_endpoint_garbage_is_an_oauth_error_never_500(server):
    url = f"{server.root}/auth/token"
    for kwargs in (
        {"data": {}},
        {"data": {"grant_type": "password", "client_id": "x"}},
        {"json": {"grant_type": "client_credentials"}},
        {
            "content": b"\xff\xfe=\x00",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        {"content": b"&".join(b"a%d=1" % i for i in range(100))},
        {"content": b"x=" + b"A" * 20_000},
        {"data": {"grant_type": "authorization_code", "code": "' OR 1=1 --", "client_id": "x"}},
        {"data": {"grant_type": "refresh_token", "refresh_token": "r" * 600, "client_id": "x"}},
        {
            "headers": {"Authorization": "Basic !!!notbase64"},
            "data": {"grant_type": "client_credentials"},
        },
    ):
        resp = httpx.post(url, **kwargs)
        assert resp.status_code in (400, 401, 413), (kwargs, resp.status_code, resp.text)
        assert "error" in resp.json()
