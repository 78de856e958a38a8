"""The admin API: client registration needs an administrator's token."""

from __future__ import annotations

import httpx

from tests.fhir_server.auth.smart import backend_token, bearer, ig_keys, make_client


def test_register_clients_over_http(server):
    url = f"{server.root}/auth/clients"
    _, public = ig_keys("RS384")
    made = httpx.post(
        url,
        json={
            "name": "Lab robot",
            "kind": "confidential-asymmetric",
            "scope": "system/*.rs",
            "jwks": public,
        },
        headers=server.headers,
    )
    assert made.status_code == 201, made.text
    client_id = made.json()["client_id"]
    listed = httpx.get(url, headers=server.headers).json()
    assert any(
        c["client_id"] == client_id and c["kind"] == "confidential-asymmetric" for c in listed
    )
    assert all("secret" not in str(c) for c in listed)
    private, _ = ig_keys("RS384")
    assert backend_token(server, client_id, private, "RS384", "system/*.rs").status_code == 200
    bad = httpx.post(
        url, json={"name": "x", "kind": "public", "scope": "user/*.rs"}, headers=server.headers
    )
    assert bad.status_code == 400 and "redirect" in bad.json()["error_description"]
    assert httpx.get(url).status_code == 401
    reader, secret = make_client(server, "confidential-symmetric", "system/*.rs", redirect=None)
    token = httpx.post(
        f"{server.root}/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(reader, secret),
    ).json()["access_token"]
    assert httpx.get(url, headers=bearer(token)).status_code == 403
