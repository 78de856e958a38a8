"""Backend clients registered by JWK Set URL (SMART "Client Authentication: Asymmetric"), on
both databases: the key set is fetched from the registered URL on a real local HTTP server, a
``jku`` other than that URL is refused, an unknown ``kid`` re-fetches once (key rotation), a
host not in HEARTH_JWKS_ALLOWED_HOSTS is refused at registration, and one client's fetched key
set never verifies another client's assertion."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from fhir_server.auth import jwks_url
from fhir_server.auth.clients import register
from fhir_server.runtime.settings import Settings
from tests.fhir_server.auth.smart import backend_token, store_of

SCOPE = "system/Patient.rs"


class _Keys(BaseHTTPRequestHandler):
    sets: dict[str, dict] = {}  # path -> public JWKS served there
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Keys.hits.append(self.path)
        body = json.dumps(_Keys.sets.get(self.path, {"keys": []})).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def keys_host(server, monkeypatch) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A local HTTP server serving key sets, allowed (over http) by the running server."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Keys)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host = f"127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setattr(server.settings, "jwks_allowed_hosts", host)
    monkeypatch.setattr(server.settings, "jwks_allow_http", True)
    monkeypatch.setattr(jwks_url, "MIN_REFETCH", 0.0)
    _Keys.sets, _Keys.hits = {}, []
    jwks_url.CACHE.clear()
    try:
        yield f"http://{host}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        jwks_url.CACHE.clear()


def _pair(kid: str) -> tuple[KeySet, dict]:
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS384"})
    return KeySet([key]), {"keys": [key.as_dict(private=False)]}


def _register(server, url: str) -> str:  # type: ignore[no-untyped-def]
    store = store_of(server)
    try:
        cid, _ = register(
            store,
            "jwks url app",
            "confidential-asymmetric",
            scope=SCOPE,
            jwks_uri=url,
            settings=server.settings,
        )
    finally:
        store.engine.dispose()
    return cid


def _token(server, cid: str, private: KeySet, **header) -> httpx.Response:  # type: ignore[no-untyped-def]
    """A client_credentials request with an assertion signed by ``private``'s key, with
    ``header`` added to its JOSE header."""
    if not header:
        return backend_token(server, cid, private, "RS384", SCOPE)
    key = next(k for k in private.keys if k.is_private)
    claims = {
        "iss": cid,
        "sub": cid,
        "aud": f"{server.root}/auth/token",
        "exp": int(time.time()) + 240,
        "jti": uuid.uuid4().hex,
    }
    signed = jwt.encode(
        {"alg": "RS384", "kid": key.kid, **header}, claims, key, algorithms=["RS384"]
    )
    return httpx.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": SCOPE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": signed,
        },
        timeout=30,
    )


def test_jwks_url_client_gets_token_and_keys_rotate(server, keys_host) -> None:  # type: ignore[no-untyped-def]
    private, public = _pair("one")
    _Keys.sets["/a.json"] = public
    cid = _register(server, f"{keys_host}/a.json")
    r = _token(server, cid, private)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == SCOPE
    assert _Keys.hits == ["/a.json"]
    assert _token(server, cid, private).status_code == 200
    assert _Keys.hits == ["/a.json"]  # cached
    # the client rotates its key: the unknown kid re-fetches the set once, and works
    rotated, rotated_public = _pair("two")
    _Keys.sets["/a.json"] = rotated_public
    r = _token(server, cid, rotated)
    assert r.status_code == 200, r.text
    assert _Keys.hits == ["/a.json", "/a.json"]
    # jku naming the registered URL is fine; any other is refused, and never fetched
    assert _token(server, cid, rotated, jku=f"{keys_host}/a.json").status_code == 200
    _Keys.sets["/evil.json"] = public
    r = _token(server, cid, private, jku=f"{keys_host}/evil.json")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert "/evil.json" not in _Keys.hits


def test_fetched_set_is_not_trusted_for_another_client(server, keys_host) -> None:  # type: ignore[no-untyped-def]
    private_a, public_a = _pair("a")
    _Keys.sets["/a.json"] = public_a
    _Keys.sets["/b.json"] = _pair("b")[1]
    a = _register(server, f"{keys_host}/a.json")
    b = _register(server, f"{keys_host}/b.json")
    assert _token(server, a, private_a).status_code == 200
    # B's assertion signed with A's key (A's set is in the cache): refused
    r = _token(server, b, private_a)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text


def test_registration_refuses_hosts_not_allowed() -> None:
    settings = Settings(jwks_allowed_hosts="keys.example.org")
    for url, why in [
        ("https://evil.example.org/jwks.json", "HEARTH_JWKS_ALLOWED_HOSTS"),
        ("http://keys.example.org/jwks.json", "must be https"),
        ("https://u:p@keys.example.org/jwks.json", "credentials"),
    ]:
        with pytest.raises(ValueError, match=why):
            register(
                None,  # type: ignore[arg-type]
                "x",
                "confidential-asymmetric",
                scope=SCOPE,
                jwks_uri=url,
                settings=settings,
            )
    with pytest.raises(ValueError, match="not enabled"):
        register(
            None,  # type: ignore[arg-type]
            "x",
            "confidential-asymmetric",
            scope=SCOPE,
            jwks_uri="https://keys.example.org/jwks.json",
            settings=Settings(),
        )
    with pytest.raises(ValueError, match="JWKS URL"):  # not smuggled in a JWKS by value
        register(
            None,  # type: ignore[arg-type]
            "x",
            "confidential-asymmetric",
            scope=SCOPE,
            jwks={"keys": [], "jwks_uri": "https://evil.example.org/jwks.json"},
            settings=settings,
        )
