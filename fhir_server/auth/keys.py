"""Hearth's signing key (RS256): created under ``HEARTH_DATA_DIR/keys`` at first start, readable
only by its owner; signs id_tokens, password-reset links and the audit log's checkpoints
(``fhir_server/runtime/audit_anchor.py``) and is published at the JWKS endpoint. Also the keys that
encrypt stored secrets (``secret_box``)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization, RSAKey

from fhir_server.runtime.settings import Settings
from resources.auth.secret_box import SecretBox

ALG = "RS256"
SECRET_KEYS_FILE = "secret-keys"


def _create_once(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) unless it exists; the first of racing workers
    wins."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    tmp.unlink()


def secret_keys(settings: Settings) -> list[bytes]:
    """The keys that encrypt stored secrets, first one encrypting: ``HEARTH_SECRET_KEYS`` when
    set, else the lines of ``HEARTH_DATA_DIR/keys/secret-keys``, created with one new key
    (mode 0600) at first use."""
    if settings.secret_keys:
        return [k.strip().encode() for k in settings.secret_keys.split(",") if k.strip()]
    path = settings.data_dir / "keys" / SECRET_KEYS_FILE
    _create_once(path, Fernet.generate_key().decode() + "\n")
    keys = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
    for key in keys:
        Fernet(key)  # a damaged file stops here with cryptography's message
    return keys


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(secret_keys(settings))


class SigningKey:
    def __init__(self, key: RSAKey) -> None:
        self.key = key

    @classmethod
    def load(cls, data_dir: Path) -> SigningKey | None:
        """The key under ``data_dir`` if there is one (never creates it)."""
        path = data_dir / "keys" / "signing-key.json"
        if not path.exists():
            return None
        return cls(RSAKey.import_key(json.loads(path.read_text())))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        path = data_dir / "keys" / "signing-key.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = RSAKey.generate_key(2048, {"kid": uuid.uuid4().hex, "use": "sig"}, private=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per racing worker
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(key.as_dict(private=True), f)
            try:
                os.link(tmp, path)  # first start wins if two workers race
            except FileExistsError:
                pass
            tmp.unlink()
        return cls(RSAKey.import_key(json.loads(path.read_text())))

    @property
    def kid(self) -> str:
        return self.key.kid or ""

    def jwks(self) -> KeySetSerialization:
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "alg": ALG, "use": "sig", "kid": self.kid}]}

    def sign(self, claims: dict, *, ttl: int) -> str:
        now = int(time.time())
        body = {"iat": now, "exp": now + ttl, **claims}
        return jwt.encode({"alg": ALG, "kid": self.kid, "typ": "JWT"}, body, self.key, [ALG])

    def verify(self, token: str, *, purpose: str) -> dict | None:
        """The claims of a token this key signed for ``purpose``, unexpired; else None."""
        try:
            claims = jwt.decode(token, self.key, [ALG]).claims
        except (JoseError, ValueError):
            return None
        if claims.get("purpose") != purpose or claims.get("exp", 0) < time.time():
            return None
        return claims

    def sign_document(self, claims: dict) -> str:
        """A compact JWS over ``claims`` that does not expire (a record, not a credential)."""
        payload = json.dumps(claims, sort_keys=True, separators=(",", ":"))
        return jws.serialize_compact({"alg": ALG, "kid": self.kid}, payload, self.key, [ALG])


def verify_document(token: str, keys: KeySet) -> dict | None:
    """The claims of a ``sign_document`` JWS whose signature one of ``keys`` (public keys, e.g.
    the server's JWKS) verifies; else None."""
    try:
        claims = json.loads(jws.deserialize_compact(token, keys, [ALG]).payload)
    except (JoseError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None
