"""The authorization service of one running app: its store, signing key and settings, built in
the app's lifespan (the signing key is the database's, shared by every node)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from fhir_server.auth.keys import SigningKey, key_store, secret_box
from fhir_server.auth.limits import Limits
from fhir_server.runtime.settings import Settings
from resources import audit
from resources.auth.store import AuthStore


@dataclass
class AuthService:
    store: AuthStore
    key: SigningKey
    settings: Settings
    writer: audit.AuditWriter
    limits: Limits

    @classmethod
    def build(cls, engine: sa.Engine, settings: Settings) -> AuthService:
        # PostgreSQL: token checks on raw prepared lookups; TOTP seeds encrypted at rest
        store = AuthStore.serving(
            engine,
            secret_box(settings),
            lookup_size=settings.db_lookup_pool_size,
            wait=settings.db_pool_timeout,
        )
        store.rewrite_secrets(only_clear=True)  # seeds stored in clear before 0008
        return cls(
            store,
            SigningKey.load_or_create(key_store(engine, settings), settings.data_dir),
            settings,
            audit.AuditWriter(engine, linger=settings.audit_linger_ms / 1000),
            Limits(settings),
        )

    def close(self) -> None:
        self.writer.close()
        self.store.close()

    @property
    def token_url(self) -> str:
        return f"{self.settings.base_url}/auth/token"

    def audit(self, event: dict) -> None:
        """Record ``event`` (not a write's: those go into the write's transaction)."""
        self.writer.submit(event)
