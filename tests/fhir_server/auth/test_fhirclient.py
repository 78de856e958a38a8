"""A real SMART client, PyPI ``fhirclient``, completes a standalone launch against a running
Hearth: it finds the endpoints through the CapabilityStatement's oauth-uris extension, sends
PKCE S256, the user signs in through the HTML form with password and TOTP, and the client
exchanges the code and reads FHIR with its token."""

from __future__ import annotations

import uuid

import httpx
from fhirclient import client
from fhirclient.models.observation import Observation

from tests.fhir_server.auth.smart import REDIRECT, make_client, make_user, parse_form


def _browser(url: str, username: str, password: str, code: str) -> str:
    """What a user does in the browser: open the authorize URL, fill in the form; returns the
    URL Hearth redirects to."""
    with httpx.Client(timeout=30) as c:
        page = c.get(url)
        assert page.status_code == 200, page.text[:300]
        form = parse_form(page.text)
        action = str(page.url.join(form.action))
        resp = c.post(
            action,
            data={**form.fields, "username": username, "password": password, "code": code},
        )
        assert resp.status_code == 303, resp.text[:500]
        return resp.headers["location"]


def test_fhirclient_standalone_launch_with_pkce_and_totp(server):
    f, h = server.fhir, server.headers
    pid = httpx.post(
        f"{f}/Patient",
        json={"resourceType": "Patient", "name": [{"family": f"Client{uuid.uuid4().hex[:5]}"}]},
        headers=h,
    ).json()["id"]
    httpx.post(
        f"{f}/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{pid}"},
        },
        headers=h,
    )
    user = make_user(server, "patient", f"Patient/{pid}", totp=True)  # a patient who enrolled
    client_id, _ = make_client(
        server, "public", "openid fhirUser launch/patient patient/*.rs offline_access"
    )
    smart = client.FHIRClient(
        settings={
            "app_id": client_id,
            "api_base": f + "/",
            "redirect_uri": REDIRECT,
            "scope": "openid fhirUser patient/*.rs offline_access",
        }
    )
    url = smart.authorize_url
    assert url.startswith(f"{server.root}/auth/authorize?")
    assert "code_challenge_method=S256" in url
    callback = _browser(url, user.username, user.password, user.totp.now())  # type: ignore[union-attr]
    smart.handle_callback(callback)
    assert smart.ready
    assert smart.patient_id == pid
    assert smart.patient.name[0].family.startswith("Client")
    search = Observation.where({"subject": f"Patient/{pid}"})
    found = list(search.perform_resources_iter(smart.server))
    assert [o.code.text for o in found] == ["weight"]
