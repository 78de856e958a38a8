"""The authorization service of one running app: its store, signing key and settings, built in
the app's lifespan (the key is created under ``HEARTH_DATA_DIR`` at first start)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from fhir_server.auth.keys import SigningKey
from fhir_server.settings import Settings
from resources import audit
from resources.auth_store import AuthStore
from resources.db import create_engine


@dataclass
class AuthService:
    store: AuthStore
    key: SigningKey
    settings: Settings
    writer: audit.AuditWriter

    @classmethod
    def build(cls, engine: sa.Engine, settings: Settings) -> AuthService:
        lookup = None
        if engine.dialect.name == "postgresql":  # token checks skip the pre-ping round trip
            lookup = create_engine(
                settings.database_url, pool_size=4, pre_ping=False, autocommit=True
            )
        return cls(
            AuthStore(engine, lookup),
            SigningKey.load_or_create(settings.data_dir),
            settings,
            audit.AuditWriter(engine),
        )

    def close(self) -> None:
        self.writer.close()
        if self.store.lookup is not self.store.engine:
            self.store.lookup.dispose()

    @property
    def token_url(self) -> str:
        return f"{self.settings.base_url}/auth/token"

    def audit(self, event: dict) -> None:
        """Record ``event`` (not a write's: those go into the write's transaction)."""
        self.writer.submit(event)
