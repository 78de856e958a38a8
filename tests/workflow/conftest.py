"""Fixtures of the workflow tests: a Hearth per backend that mails through a real SMTP server
(aiosmtpd, STARTTLS), and clients acting as each role."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.servers import database_url, start_server
from tests.shared import shared_path
from tests.workflow.smtp import start_smtp


@pytest.fixture(scope="session")
def smtp(tmp_path_factory):  # type: ignore[no-untyped-def]
    server = start_smtp(tmp_path_factory.mktemp("smtp"))
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def wf_server(request, tmp_path_factory, smtp):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"wf-{request.param}"))
    running = start_server(
        request.param,
        url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_ca_file=smtp.ca_file,
        smtp_from="reports@hearth.test",
        facility_name="Hearth District Hospital",
    )
    yield running
    running.stop()
    cleanup()


class Fhir:
    """An httpx client on the FHIR base that can act as a role (X-Hearth-Role/-Actor)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        # An operator (system/*.cruds) token: a trusted backend acting on behalf of each role.
        self.http = httpx.Client(base_url=base, timeout=120, headers=headers)

    def close(self) -> None:
        self.http.close()

    def create(self, body: dict) -> dict:
        resp = self.http.post(f"/{body['resourceType']}", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def get(self, path: str, **params: object) -> dict:
        resp = self.http.get(path, params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def op(
        self, path: str, actor: tuple[str, str] | None, params: dict | None = None
    ) -> httpx.Response:
        headers = {}
        if actor:
            headers = {"X-Hearth-Role": actor[0], "X-Hearth-Actor": actor[1]}
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": k, **v}
                for k, vs in (params or {}).items()
                for v in (vs if isinstance(vs, list) else [vs])
            ],
        }
        return self.http.post(path, json=body, headers=headers)

    def search(self, res_type: str, **params: object) -> list[dict]:
        bundle = self.get(f"/{res_type}", **params)
        return [
            e["resource"]
            for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"
        ]


@pytest.fixture
def fhir(wf_server):  # type: ignore[no-untyped-def]
    client = Fhir(wf_server.fhir, wf_server.headers)
    yield client
    client.close()


def ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def person(fhir: Fhir, res_type: str, family: str, *, email: str | None = None) -> dict:
    body: dict = {"resourceType": res_type, "name": [{"given": ["Test"], "family": family}]}
    if res_type == "Patient":
        body["identifier"] = [{"system": "urn:hearth:test", "value": uuid.uuid4().hex[:10]}]
        body["birthDate"] = "1961-04-12"
        body["gender"] = "female"
    if email:
        body["telecom"] = [{"system": "email", "value": email}]
    return fhir.create(body)


@pytest.fixture
def team(fhir):  # type: ignore[no-untyped-def]
    """A patient (with a unique e-mail address) and one person per role, as (role, reference)."""
    tag = uuid.uuid4().hex[:8]
    patient = person(fhir, "Patient", f"Patient{tag}", email=f"patient-{tag}@example.org")
    out = {
        "patient_resource": patient,
        "patient": ("patient", ref(patient)),
        "email": f"patient-{tag}@example.org",
    }
    for role in ("cadre", "doctor", "doctor2", "pharmacist", "admin"):
        p = person(fhir, "Practitioner", f"{role.title()}{tag}")
        out[role] = (role.rstrip("2"), ref(p))
    device = fhir.create(
        {
            "resourceType": "Device",
            "deviceName": [{"name": "hearth-skin-classifier", "type": "model-name"}],
            "version": [{"value": "1.0.0"}],
        }
    )
    out["ai"] = ("ai", ref(device))
    return out


def photo_media(fhir: Fhir, patient: str) -> dict:
    data = shared_path("data", "skin_photos", "ISIC_0024310.jpg").read_bytes()
    return fhir.create(
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "content": {
                "contentType": "image/jpeg",
                "data": base64.b64encode(data).decode(),
                "title": "Lesion photo",
            },
        }
    )
