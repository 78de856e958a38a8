"""Hearth's own private keys in the database, so every node that shares it signs with the same
keys: the id_token / reset-link / audit-checkpoint key (``fhir_server/auth/keys.py``) and the
generated report signing key (``workflow/signing.py``). Each is generated once, by the first
process that asks for it, and stored encrypted with the ``SecretBox`` (``HEARTH_SECRET_KEYS``):
a node whose secret keys do not decrypt it stops with ``SecretKeyError`` instead of signing with a
key of its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from resources.auth.secret_box import SecretBox
from resources.storage.schema import UtcDateTime, metadata

auth_key = sa.Table(
    "auth_key",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),  # "jwt-signing", "report-signing"
    sa.Column("material", sa.Text, nullable=False),  # Fernet token of the key's text
    sa.Column("created", UtcDateTime(), nullable=False),
)


class KeyStore:
    def __init__(self, engine: sa.Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box

    def get(self, name: str) -> str | None:
        """The key stored as ``name``, decrypted; None if there is none."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                sa.select(auth_key.c.material).where(auth_key.c.name == name)
            ).scalar_one_or_none()
        return None if stored is None else self.box.decrypt(stored)

    def get_or_create(self, name: str, make: Callable[[], str]) -> tuple[str, bool]:
        """The key stored as ``name``, else ``make()``'s stored under it: ``(key, created)``.
        When nodes race, the first insert wins and every node returns its key."""
        existing = self.get(name)
        if existing is not None:
            return existing, False
        value = make()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(auth_key).values(
                        name=name, material=self.box.encrypt(value), created=datetime.now(UTC)
                    )
                )
        except IntegrityError:
            stored = self.get(name)
            assert stored is not None
            return stored, False
        return value, True

    def rewrite(self) -> int:
        """Re-encrypt every stored key under the first secret key (key rotation); returns how
        many were rewritten."""
        n = 0
        with self.engine.begin() as conn:
            for name, stored in conn.execute(sa.select(auth_key.c.name, auth_key.c.material)):
                if self.box.needs_rewrite(stored):
                    conn.execute(
                        sa.update(auth_key)
                        .where(auth_key.c.name == name)
                        .values(material=self.box.rewrite(stored))
                    )
                    n += 1
        return n
