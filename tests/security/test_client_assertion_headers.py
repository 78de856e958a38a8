"""private_key_jwt client assertions and their JOSE header (RFC 7515 section 4, SMART Backend
Services), over HTTP on both databases: header parameters Hearth does not know are ignored,
``crit`` naming an extension is refused, keys come only from the registered JWKS (``kid``), a
``jku`` is never fetched, ``alg`` must be RS384 or ES384 (``none`` and HMAC refused)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter, is_str

from tests.fhir_server.auth.smart import ig_keys, make_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LAX = {"RS384": JWSRegistry(algorithms=["RS384"], strict_check_header=False)}
LAX["ES384"] = JWSRegistry(algorithms=["ES384"], strict_check_header=False)


def _claims(client_id: str, aud: str) -> dict:
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": int(time.time()) + 240,
        "jti": uuid.uuid4().hex,
    }


def _sign(key, header: dict, claims: dict, registry: JWSRegistry | None = None) -> str:  # type: ignore[no-untyped-def]
    return jwt.encode(header, claims, key, registry=registry or LAX[header["alg"]])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _post(server, value: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": value,
        },
        timeout=60,
    )


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Recorder.hits.append(self.path)
        body = json.dumps({"keys": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def jwks_host():  # type: ignore[no-untyped-def]
    """An HTTP server that records every request made to it (a jku an attacker points at)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Recorder.hits = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_unknown_header_parameters_are_ignored(server, alg, jwks_host):
    private, public = ig_keys(alg)
    key = next(k for k in private.keys if k.is_private)
    client_id, _ = make_client(server, "confidential-asymmetric", "system/*.rs", jwks=public)
    aud = f"{server.root}/auth/token"
    # the way the Bulk Data Tester signs: kty (a JWK member, not a JWS header) and a jku
    tester = {"alg": alg, "kid": key.kid, "typ": "JWT", "kty": key.key_type}
    resp = _post(
        server, _sign(key, {**tester, "jku": f"{jwks_host}/jwks.json"}, _claims(client_id, aud))
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"] == "system/*.rs"
    private_field = {"alg": alg, "kid": key.kid, "x-vendor-trace": "abc", "n0": {"a": [1]}}
    resp = _post(server, _sign(key, private_field, _claims(client_id, aud)))
    assert resp.status_code == 200, resp.text
    # a certificate chain it carries (a header well over 512 bytes) is not a key source either
    chain = {"alg": alg, "kid": key.kid, "x5c": [base64.b64encode(b"c" * 1200).decode()]}
    resp = _post(server, _sign(key, chain, _claims(client_id, aud)))
    assert resp.status_code == 200, resp.text
    no_kid = {"alg": alg, "typ": "JWT"}  # one key of the type registered: it is the one
    resp = _post(server, _sign(key, no_kid, _claims(client_id, aud)))
    assert resp.status_code == 200, resp.text
    assert _Recorder.hits == []  # the jku was never fetched


def test_crit_listing_an_extension_is_refused(server):
    private, public = ig_keys("ES384")
    key = next(k for k in private.keys if k.is_private)
    client_id, _ = make_client(server, "confidential-asymmetric", "system/*.rs", jwks=public)
    aud = f"{server.root}/auth/token"
    knows_ext = JWSRegistry(
        header_registry={"x-ext": HeaderParameter("an extension", is_str)},
        algorithms=["ES384"],
        strict_check_header=False,
    )
    header = {"alg": "ES384", "kid": key.kid, "x-ext": "must-understand", "crit": ["x-ext"]}
    resp = _post(server, _sign(key, header, _claims(client_id, aud), knows_ext))
    assert resp.status_code == 401
    body = resp.json()
    assert body["error"] == "invalid_client" and "crit" in body["error_description"]


def test_keys_come_only_from_the_registered_jwks(server, jwks_host):
    private, public = ig_keys("ES384")
    key = next(k for k in private.keys if k.is_private)
    client_id, _ = make_client(server, "confidential-asymmetric", "system/*.rs", jwks=public)
    aud = f"{server.root}/auth/token"
    attacker = ECKey.generate_key("P-384", {"kid": "attacker"}, private=True)
    # the attacker's key named by kid, carried in the header, or published at a jku
    for header in (
        {"alg": "ES384", "kid": "attacker"},
        {"alg": "ES384", "kid": "attacker", "jwk": attacker.as_dict(private=False)},
        {"alg": "ES384", "kid": "attacker", "jku": f"{jwks_host}/evil.json"},
        {"alg": "ES384", "kid": key.kid, "jku": f"{jwks_host}/evil.json"},  # kid of a real key
    ):
        resp = _post(server, _sign(attacker, header, _claims(client_id, aud)))
        assert resp.status_code == 401, header
        assert resp.json()["error"] == "invalid_client"
    assert _Recorder.hits == []


def test_alg_none_hmac_and_other_algorithms_are_refused(server):
    private, public = ig_keys("RS384")
    client_id, _ = make_client(server, "confidential-asymmetric", "system/*.rs", jwks=public)
    aud = f"{server.root}/auth/token"
    payload = _b64(json.dumps(_claims(client_id, aud)).encode())
    for alg in ("none", "None", "NONE"):
        head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        resp = _post(server, f"{head}.{payload}.")
        assert resp.status_code == 401 and "RS384 or ES384" in resp.json()["error_description"]
    # HMAC with the client's public key as the secret (algorithm confusion)
    pub = KeySet.import_key_set(public).keys[0]
    secret = OctKey.import_key(json.dumps(pub.as_dict(private=False)).encode())
    hs = jwt.encode(
        {"alg": "HS384", "kid": pub.kid},
        _claims(client_id, aud),
        secret,
        registry=JWSRegistry(algorithms=["HS384"]),
    )
    resp = _post(server, hs)
    assert resp.status_code == 401 and "RS384 or ES384" in resp.json()["error_description"]
    # RS256 with the registered key: not accepted (SMART asks for RS384 / ES384)
    key = next(k for k in private.keys if k.is_private)
    bare = {k: v for k, v in key.as_dict(private=True).items() if k != "alg"}
    rs256 = _sign(
        RSAKey.import_key(bare),
        {"alg": "RS256", "kid": key.kid},
        _claims(client_id, aud),
        JWSRegistry(algorithms=["RS256"]),
    )
    assert _post(server, rs256).status_code == 401
