"""Hearth's signing key (RS256): generated once and kept in the database (``auth_key``, encrypted
with ``HEARTH_SECRET_KEYS``: ``resources/auth/key_store.py``), so every node sharing the database
signs and verifies with it; signs id_tokens, password-reset links and the audit log's checkpoints
(``fhir_server/runtime/audit_anchor.py``) and is published at the JWKS endpoint. A key file left
under ``HEARTH_DATA_DIR/keys`` by an earlier version is imported once, by the first process that
finds the table empty. Also the keys that encrypt stored secrets (``secret_box``)."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization, RSAKey

from fhir_server.runtime.settings import Settings
from resources.auth.key_store import KeyStore
from resources.auth.secret_box import SecretBox, SecretKeyError

log = logging.getLogger("hearth.auth")

ALG = "RS256"
SECRET_KEYS_FILE = "secret-keys"
JWT_KEY = "jwt-signing"  # its name in auth_key
KEY_FILE = Path("keys") / "signing-key.json"  # where versions before 0011 kept it


class SharedKeyError(RuntimeError):
    """A key stored in the database that this node's secret keys do not decrypt."""


def key_store(engine: sa.Engine, settings: Settings) -> KeyStore:
    return KeyStore(engine, secret_box(settings))


def shared_key(store: KeyStore, name: str, make: Callable[[], str]) -> str:
    """The key stored as ``name`` (``make()``'s, stored, if none is); a clear error when this
    node cannot decrypt it."""
    try:
        text, created = store.get_or_create(name, make)
    except SecretKeyError:
        raise SharedKeyError(
            f"the {name} key in the database cannot be decrypted with this node's secret keys: "
            "give every node the same HEARTH_SECRET_KEYS (docs/deployment.md)"
        ) from None
    if created:
        log.info("stored the %s key in the database", name)
    return text


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
    def load(cls, store: KeyStore) -> SigningKey | None:
        """The key in the database if there is one (never creates it)."""
        try:
            text = store.get(JWT_KEY)
        except SecretKeyError:
            raise SharedKeyError(
                f"the {JWT_KEY} key in the database cannot be decrypted with this node's "
                "secret keys: give every node the same HEARTH_SECRET_KEYS"
            ) from None
        return None if text is None else cls(RSAKey.import_key(json.loads(text)))

    @classmethod
    def load_or_create(cls, store: KeyStore, data_dir: Path) -> SigningKey:
        """The key in the database; if there is none yet, this data directory's key file (an
        earlier version's) or a new key, stored for every node."""

        def make() -> str:
            path = data_dir / KEY_FILE
            if path.exists():
                log.info("importing the signing key from %s into the database", path)
                return path.read_text()
            key = RSAKey.generate_key(2048, {"kid": uuid.uuid4().hex, "use": "sig"}, private=True)
            return json.dumps(key.as_dict(private=True))

        text = shared_key(store, JWT_KEY, make)
        key = cls(RSAKey.import_key(json.loads(text)))
        path = data_dir / KEY_FILE
        if path.exists():
            try:
                local = RSAKey.import_key(json.loads(path.read_text())).kid
            except (OSError, ValueError, JoseError):
                local = None
            if local != key.kid:
                log.warning(
                    "%s is not the shared signing key (the database's, kid %s): it is not used",
                    path,
                    key.kid,
                )
        return key

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
