"""Signing keys live in the database, not in a node's data directory: two Hearth servers with
different data directories on one database publish the same JWKS, and what one signs (the login
form's CSRF and pending tokens, id_tokens) the other verifies; the key files of an earlier
version are imported once; a node without the shared HEARTH_SECRET_KEYS refuses to start rather
than sign with a key of its own (docs/deployment.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from fhir_server.auth.keys import KEY_FILE, SharedKeyError, SigningKey, key_store
from fhir_server.auth.web import CSRF_COOKIE, CSRF_FIELD
from fhir_server.runtime.settings import Settings
from resources.auth.store import digest
from resources.storage.db import create_engine
from tests.fhir_server.auth.smart import (
    REDIRECT,
    bearer,
    code_of,
    exchange,
    make_client,
    make_user,
    parse_form,
    pkce,
)
from tests.servers import database_url, free_port, start_server
from workflow import signing

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path)
    yield request.param, url
    cleanup()


def jwks(server) -> dict:  # type: ignore[no-untyped-def]
    resp = httpx.get(f"{server.root}/auth/jwks")
    assert resp.status_code == 200
    return resp.json()


def test_two_nodes_sign_and_verify_each_others_tokens(database, tmp_path):  # type: ignore[no-untyped-def]
    backend, url = database
    secret = Fernet.generate_key().decode()
    a = start_server(backend, url, data_dir=tmp_path / "a", secret_keys=secret)
    # B stands beside A behind one public address (HEARTH_BASE_URL): the aud of a login
    b = start_server(backend, url, data_dir=tmp_path / "b", secret_keys=secret, base_url=a.root)
    try:
        assert jwks(a) == jwks(b)
        assert not (tmp_path / "a" / KEY_FILE).exists()  # nothing node-local to lose or copy
        assert not (tmp_path / "b" / KEY_FILE).exists()

        body = {"resourceType": "Patient", "name": [{"family": "Cluster"}]}
        pid = httpx.post(f"{a.fhir}/Patient", json=body, headers=a.headers).json()["id"]
        user = make_user(a, "patient", f"Patient/{pid}")
        app, _ = make_client(a, "public", "openid fhirUser patient/*.rs")
        verifier, challenge = pkce()
        params = {
            "response_type": "code",
            "client_id": app,
            "redirect_uri": REDIRECT,
            "scope": "openid fhirUser patient/*.rs",
            "state": "st-1",
            "aud": a.fhir,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        # The login page comes from node A (its form carries A's signed CSRF token, bound to
        # the browser's cookie); the browser's POST lands on node B, which must accept it.
        with httpx.Client(timeout=30) as browser:
            page = browser.get(f"{a.root}/auth/authorize", params=params)
            assert page.status_code == 200, page.text[:500]
            form = parse_form(page.text)
            action = urlsplit(form.action).path
            fields = {**form.fields, "username": user.username, "password": user.password}
            posted = browser.post(f"{b.root}{action}", data={**fields, "code": ""})
            code = code_of(posted)

            # a CSRF token signed by another deployment's key is refused by both nodes
            foreign = SigningKey(RSAKey.generate_key(2048, {"kid": "foreign"}, private=True))
            bind = digest(browser.cookies[CSRF_COOKIE])
            forged = {
                **fields,
                CSRF_FIELD: foreign.sign({"purpose": "csrf", "bind": bind}, ttl=600),
            }
            for node in (a, b):
                refused = browser.post(f"{node.root}{action}", data=forged)
                assert refused.status_code == 403, refused.text[:300]

        token = exchange(b, app, code, verifier)  # B issues the id_token
        assert token.status_code == 200, token.text
        issued = token.json()
        claims = jwt.decode(
            issued["id_token"], KeySet.import_key_set(jwks(a)), algorithms=["RS256"]
        ).claims  # A's published key verifies it
        assert claims["fhirUser"].endswith(f"/Patient/{pid}")
        read = httpx.get(f"{a.fhir}/Patient/{pid}", headers=bearer(issued["access_token"]))
        assert read.status_code == 200
    finally:
        a.stop()
        b.stop()


def test_an_existing_key_file_is_imported_once(database, tmp_path):  # type: ignore[no-untyped-def]
    backend, url = database
    secret = Fernet.generate_key().decode()
    old = RSAKey.generate_key(2048, {"kid": f"old-{uuid.uuid4().hex[:6]}"}, private=True)
    other = RSAKey.generate_key(2048, {"kid": "other-node"}, private=True)
    for name, key in (("a", old), ("b", other)):
        path = tmp_path / name / KEY_FILE
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(key.as_dict(private=True)))
    a = start_server(backend, url, data_dir=tmp_path / "a", secret_keys=secret)
    b = start_server(backend, url, data_dir=tmp_path / "b", secret_keys=secret)
    try:
        assert [k["kid"] for k in jwks(a)["keys"]] == [old.kid]
        assert jwks(b) == jwks(a)  # B's own file is not used: the database's key wins
    finally:
        a.stop()
        b.stop()


def test_a_node_without_the_shared_secret_keys_does_not_sign(database, tmp_path):  # type: ignore[no-untyped-def]
    _, url = database
    engine = create_engine(url)
    try:
        mine = Settings(database_url=url, secret_keys=Fernet.generate_key().decode())
        theirs = Settings(database_url=url, secret_keys=Fernet.generate_key().decode())
        key = SigningKey.load_or_create(key_store(engine, mine), tmp_path / "a")
        assert SigningKey.load(key_store(engine, mine)).kid == key.kid  # type: ignore[union-attr]
        with pytest.raises(SharedKeyError, match="HEARTH_SECRET_KEYS"):
            SigningKey.load_or_create(key_store(engine, theirs), tmp_path / "b")
        with pytest.raises(SharedKeyError):
            SigningKey.load(key_store(engine, theirs))
    finally:
        engine.dispose()


def test_the_generated_report_signing_key_is_shared(database, tmp_path: Path):  # type: ignore[no-untyped-def]
    _, url = database
    engine = create_engine(url)
    try:
        settings = Settings(database_url=url, secret_keys=Fernet.generate_key().decode())
        store = key_store(engine, settings)
        old = signing.load_or_create(tmp_path / "a", "Old Hospital")  # an earlier version's file
        first = signing.shared(store, tmp_path / "a", "Ignored")
        assert first == old  # imported once
        assert signing.shared(store, tmp_path / "b", "Other") == first  # another node
        assert not (tmp_path / "b" / signing.GENERATED).exists()
    finally:
        engine.dispose()


def test_rotating_the_secret_keys_rewrites_the_stored_keys(database, tmp_path):  # type: ignore[no-untyped-def]
    _, url = database
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    engine = create_engine(url)
    try:
        before = Settings(database_url=url, secret_keys=old)
        key = SigningKey.load_or_create(key_store(engine, before), tmp_path)
        rotating = key_store(engine, Settings(database_url=url, secret_keys=f"{new},{old}"))
        assert rotating.rewrite() == 1
        assert rotating.rewrite() == 0
        after = SigningKey.load(key_store(engine, Settings(database_url=url, secret_keys=new)))
        assert after is not None and after.kid == key.kid
        with pytest.raises(SharedKeyError):
            SigningKey.load(key_store(engine, before))
    finally:
        engine.dispose()


def test_hearth_serve_without_the_shared_secret_keys_stops_and_says_why(database, tmp_path):  # type: ignore[no-untyped-def]
    _, url = database
    engine = create_engine(url)
    try:  # the deployment's key, under its secret keys
        deployment = Settings(database_url=url, secret_keys=Fernet.generate_key().decode())
        SigningKey.load_or_create(key_store(engine, deployment), tmp_path / "first")
    finally:
        engine.dispose()
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": url,
        "HEARTH_DATA_DIR": str(tmp_path / "stray"),  # its own generated secret key
        "HEARTH_BASE_URL": "http://127.0.0.1:9",
    }
    env.pop("HEARTH_SECRET_KEYS", None)
    cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(
        [*cmd, "--no-dicom"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "cannot be decrypted with this node's secret keys" in done.stdout + done.stderr
    assert "HEARTH_SECRET_KEYS" in done.stdout + done.stderr
