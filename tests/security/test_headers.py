"""Security headers on every edge: FHIR, auth, DICOMweb, the web app, health, redirects and every
kind of error (401, 403, 404, 405, 413, 500). The API docs are off unless HEARTH_API_DOCS is on,
and then served with a CSP naming exactly what the page loads."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from resources.storage.db import create_engine
from tests.servers import database_url, start_server

API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _secure(resp: httpx.Response, *, csp: str | None = API_CSP) -> None:
    where = f"{resp.request.method} {resp.request.url} -> {resp.status_code}"
    assert resp.headers.get("x-content-type-options") == "nosniff", where
    assert resp.headers.get("referrer-policy") == "no-referrer", where
    assert resp.headers.get("x-frame-options") == "DENY", where
    assert resp.headers.get("x-request-id"), where  # the id the server's log lines name
    if csp is not None:
        assert resp.headers.get("content-security-policy") == csp, where
    assert len(resp.headers.get_list("content-security-policy")) == 1, where


def test_every_edge_answers_with_security_headers(server):
    f, root, h = server.fhir, server.root, server.headers
    with httpx.Client(timeout=30, follow_redirects=False) as c:
        pid = c.post(f"{f}/Patient", json={"resourceType": "Patient"}, headers=h).json()["id"]
        for resp in (
            c.get(f"{f}/metadata"),
            c.get(f"{f}/Patient/{pid}", headers=h),
            c.get(f"{f}/Patient", headers=h),
            c.get(f"{f}/Patient/{pid}"),  # 401
            c.get(f"{f}/Patient/no-such-id", headers=h),  # 404 (FHIR)
            c.get(f"{f}/Patient/{pid}/$nope/x/y/z", headers=h),  # 404 (no route)
            c.delete(f"{f}/metadata", headers=h),  # 405
            c.post(
                f"{f}/Patient",
                content=b"{not json",
                headers={**h, "content-type": "application/fhir+json"},
            ),  # 400
            c.get(f"{root}/healthz"),
            c.get(f"{root}/"),  # redirect
            c.get(f"{root}/auth/jwks"),
            c.get(f"{root}/.well-known/smart-configuration"),
            c.post(f"{root}/auth/token", data={"grant_type": "client_credentials"}),  # 401
            c.get(f"{root}/dicomweb/studies", headers=h),
            c.get(f"{root}/dicomweb/studies"),  # 401
            c.get(f"{root}/dicomweb/studies/1.2.3/series/4/instances/5", headers=h),  # 404
            c.get(f"{root}/nowhere"),  # 404 outside every router
            c.get(f"{root}/docs"),  # API docs are off by default
            c.get(f"{root}/openapi.json"),
            c.get(f"{root}/redoc"),
        ):
            _secure(resp)
        for off in ("/docs", "/openapi.json", "/redoc"):
            assert c.get(f"{root}{off}").status_code == 404
        restricted = c.get(f"{f}/AuditEvent", headers={"Authorization": "Bearer nope"})
        assert restricted.status_code == 401
        _secure(restricted)
        # pages keep their own, stricter-for-their-purpose policy (and only one of it)
        login = c.get(f"{root}/auth/authorize", params={"client_id": "nobody"})
        _secure(login, csp=None)
        assert "style-src 'unsafe-inline'" in login.headers["content-security-policy"]
        webapp = c.get(f"{root}/app/")
        assert webapp.status_code == 200
        _secure(webapp, csp=None)
        assert "script-src 'self'" in webapp.headers["content-security-policy"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_faults_and_api_docs(backend, tmp_path):
    url, cleanup = database_url(backend, tmp_path)
    running = start_server(backend, url, api_docs=True)
    engine = create_engine(url)
    try:
        with httpx.Client(timeout=30) as c:
            docs = c.get(f"{running.root}/docs")
            assert docs.status_code == 200 and "swagger-ui" in docs.text
            csp = docs.headers["content-security-policy"]
            _secure(docs, csp=csp)
            assert "script-src https://cdn.jsdelivr.net 'sha256-" in csp
            assert "default-src 'none'" in csp and "connect-src 'self'" in csp
            spec = c.get(f"{running.root}/openapi.json")
            assert spec.status_code == 200 and spec.json()["info"]["title"] == "Hearth"
            _secure(spec)
            # a real fault: the database lost the resource table under the running server
            with engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE resource RENAME TO resource_gone"))
            fault = c.get(f"{running.fhir}/Patient/anything", headers=running.headers)
            assert fault.status_code == 500, fault.text
            assert fault.json()["issue"][0]["code"] == "exception"
            _secure(fault)
    finally:
        running.stop()
        engine.dispose()
        cleanup()  # type: ignore[operator]
