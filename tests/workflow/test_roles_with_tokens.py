"""The workflow with real SMART user tokens: each person signs in (password + TOTP, code + PKCE)
and acts as the role and the fhirUser of their account — the X-Hearth-* headers a trusted
backend may send are ignored for a user's token."""

from __future__ import annotations

import httpx

from tests.fhir_server.auth.smart import code_of, exchange, login, make_client, make_user, pkce
from tests.workflow.conftest import photo_media, ref
from tests.workflow.test_cases_http import STEP, business

SCOPE = "openid fhirUser user/*.cruds"


def user_token(server, client_id: str, role: str, fhir_user: str) -> str:  # type: ignore[no-untyped-def]
    user = make_user(server, role, fhir_user)
    verifier, challenge = pkce()
    code = code_of(login(server, client_id, user, SCOPE, challenge=challenge))
    body = exchange(server, client_id, code, verifier).json()
    assert body["scope"].split() and "access_token" in body, body
    return body["access_token"]


def op(server, token: str, path: str, params: dict | None = None, headers=None) -> httpx.Response:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": k, **v} for k, v in (params or {}).items()],
    }
    return httpx.post(
        f"{server.fhir}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        timeout=60,
    )


def test_each_person_acts_with_their_own_token(wf_server, fhir, team):
    client_id, _ = make_client(wf_server, "public", SCOPE)
    cadre = user_token(wf_server, client_id, "cadre", team["cadre"][1])
    doctor = user_token(wf_server, client_id, "doctor", team["doctor"][1])
    pharmacist = user_token(wf_server, client_id, "pharmacist", team["pharmacist"][1])
    patient = team["patient"][1]
    media = photo_media(fhir, patient)

    params = {
        "caseType": {"valueCode": "skin-screening"},
        "patient": {"valueReference": {"reference": patient}},
        "focus": {"valueReference": {"reference": ref(media)}},
    }
    # A pharmacist may not start a skin-screening case; the cadre may, as themself.
    assert op(wf_server, pharmacist, "/Task/$start-case", params).status_code == 403
    created = op(wf_server, cadre, "/Task/$start-case", params)
    assert created.status_code == 201, created.text
    case = created.json()
    assert case["requester"] == {"reference": team["cadre"][1]}

    # The AI step is done by the AI (here the trusted backend acting as it).
    [ai_step] = fhir.search(
        "Task", **{"part-of": f"Task/{case['id']}", "code": f"{STEP}|ai-analysis"}
    )
    obs = fhir.create(
        {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": {"text": "Skin lesion classification"},
            "subject": case["for"],
            "basedOn": case["basedOn"],
            "valueCodeableConcept": {"text": "Melanocytic nevus"},
        }
    )
    done = fhir.op(
        f"/Task/{ai_step['id']}/$complete",
        team["ai"],
        {"result": {"valueReference": {"reference": ref(obs)}}},
    )
    assert done.status_code == 200, done.text
    assert business(fhir.get(f"/Task/{case['id']}")) == "AI_ANALYZED"

    [review] = fhir.search(
        "Task", **{"part-of": f"Task/{case['id']}", "code": f"{STEP}|doctor-review"}
    )
    # The cadre's token cannot claim the doctor's step, whatever headers it sends.
    forged = {"X-Hearth-Role": "doctor", "X-Hearth-Actor": team["doctor"][1]}
    assert op(wf_server, cadre, f"/Task/{review['id']}/$claim", headers=forged).status_code == 403
    claimed = op(wf_server, doctor, f"/Task/{review['id']}/$claim")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["owner"] == {"reference": team["doctor"][1]}
