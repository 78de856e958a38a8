"""The web app's files as Hearth serves them: a strict Content-Security-Policy on each, no inline
script, nothing loaded from another origin, ES module imports that resolve to served files, and
an OperationOutcome for a file that is not part of the app. (No database: the files need none.)"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from fhir_server.runtime.app import create_app
from fhir_server.runtime.settings import Settings
from fhir_server.webapp import CLIENT_ID, NOT_BUILT, portal_files, static_files


@pytest.fixture(scope="module")
def http(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("webapp-static")
    app = create_app(Settings(database_url=f"sqlite:///{tmp / 'unused.db'}", data_dir=tmp))
    return TestClient(app)  # no lifespan: the static routes use no state


def csp(resp) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    out = {}
    for directive in resp.headers["content-security-policy"].split(";"):
        name, *values = directive.split()
        out[name] = values
    return out


def test_index_is_served_with_a_strict_policy(http):
    resp = http.get("/app/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    policy = csp(resp)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "blob:"]
    assert policy["frame-src"] == ["blob:"]  # the report preview, a PDF the app fetched
    assert "object-src" not in policy  # default-src 'none': no plugins
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in resp.headers["content-security-policy"]
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert f'content="{CLIENT_ID}"' in resp.text
    assert '<html lang="en">' in resp.text


def test_no_file_names_another_origin_or_inlines_script(http):
    files = static_files()
    assert {"index.html", "app.js", "smart.js", "fhir.js", "app.css"} <= set(files)
    for name, body in files.items():
        resp = http.get(f"/app/{name}")
        assert resp.status_code == 200, name
        assert resp.content == body
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        text = body.decode()
        # The only absolute URLs are identifiers, never fetched: the SVG namespace of the icon
        # and of createElementNS (history.js's chart), Hearth's code systems and value sets
        # (the formulary, which medication.js expands by its url) and RxNorm's system URI,
        # compared with codings.
        if name.endswith(".svg"):
            text = text.replace('xmlns="http://www.w3.org/2000/svg"', "", 1)
        for url in re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"']*", text, re.I):
            assert re.fullmatch(
                r"http://hearth\.local/fhir/(CodeSystem|ValueSet)/[a-z-]+"
                r"|http://www\.nlm\.nih\.gov/research/umls/rxnorm|http://www\.w3\.org/2000/svg",
                url,
            ), (name, url)
            assert re.search(rf'^const [A-Z_]+ = "{re.escape(url)}";$', text, re.M), (name, url)
        if name.endswith(".css"):
            assert "@import" not in text and "url(" not in text, name
        if name.endswith(".html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"inline script in {name}"
            assert not re.search(r"\son[a-z]+=", text), f"inline handler in {name}"
        if name.endswith(".js"):
            assert resp.headers["content-type"].startswith("text/javascript")
            for target in re.findall(r'^import .* from "([^"]+)";$', text, re.M):
                assert target.startswith("./") and target[2:] in files, (name, target)


def test_other_paths(http):
    assert http.get("/app", follow_redirects=False).headers["location"] == "/app/"
    for path in ("/app/missing.js", "/app/__init__.py", "/app/..%2f__init__.py"):
        resp = http.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["resourceType"] == "OperationOutcome"


def test_the_patient_portal_is_built_and_served_with_the_same_policy(http):
    files = portal_files()
    assert files is not None, NOT_BUILT  # `make install` builds it (`make webapp`)
    assert {"index.html", "portal.js", "portal.css"} <= set(files)
    assert http.get("/app/portal", follow_redirects=False).headers["location"] == "/app/portal/"
    index = http.get("/app/portal/")
    assert index.status_code == 200 and index.content == files["index.html"]
    for name, body in files.items():
        resp = http.get(f"/app/portal/{name}")
        assert resp.status_code == 200, name
        assert resp.content == body
        policy = csp(resp)
        assert policy["default-src"] == ["'none'"] and policy["script-src"] == ["'self'"]
        assert policy["connect-src"] == ["'self'"], name
        text = body.decode()
        if name.endswith(".html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"inline script in {name}"
            assert not re.search(r"\son[a-z]+=", text), f"inline handler in {name}"
            assert not re.search(r"<style", text), f"inline style in {name}"
            for src in re.findall(r'(?:src|href)="([^"]+)"', text):
                assert src.startswith("/app/"), (name, src)  # this origin only
        if name.endswith(".js"):
            # No code built from strings (script-src 'self' would refuse it at run time).
            assert "eval(" not in text and "new Function(" not in text, name
    missing = http.get("/app/portal/missing.js")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
