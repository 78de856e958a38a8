"""Settings: ``HEARTH_*`` environment variables, typed and checked when the app starts.

CLI flags override the environment. Nothing here runs at import time: ``Settings()`` is built in
the CLI or the app factory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting Hearth reads. Documented in README.md ("Configuration")."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    database_url: str = Field(
        "sqlite:///var/hearth.db",
        description="SQLAlchemy URL: sqlite:///path.db (embedded) or postgresql://user@host/db",
    )
    data_dir: Path = Field(Path("var"), description="Where files live (DICOM, binaries, keys)")
    base_url: str = Field(
        "http://127.0.0.1:8080",
        description="Public URL of the server root; the FHIR base is {base_url}/fhir",
    )
    host: str = Field("127.0.0.1", description="Address `hearth serve` binds")
    port: int = Field(8080, ge=1, le=65535, description="Port `hearth serve` binds")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)"
    )
    default_page_size: int = Field(20, ge=1, le=1000, description="Search/history _count default")
    max_page_size: int = Field(1000, ge=1, description="Largest _count honoured")
    slow_query_ms: float = Field(500.0, ge=0, description="Searches slower than this are logged")
    dicom_port: int = Field(11112, ge=1, le=65535, description="DICOM C-STORE listener port")
    dicom_ae_title: str = Field("HEARTH", max_length=16, description="DICOM AE title")
    mllp_port: int = Field(2575, ge=1, le=65535, description="HL7 v2 MLLP listener port")
    smtp_host: str | None = Field(None, description="SMTP server for e-mail (reports, resets)")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (STARTTLS)")
    smtp_user: str | None = Field(None, description="SMTP user name")
    smtp_password: str | None = Field(None, description="SMTP password")
    smtp_from: str = Field("hearth@localhost", description="From address of Hearth's e-mail")
    log_level: str = Field("info", description="debug | info | warning | error")

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("HEARTH_BASE_URL must be an http(s) URL")
        return v.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.lower()
        if v not in ("debug", "info", "warning", "error"):
            raise ValueError("HEARTH_LOG_LEVEL must be debug, info, warning or error")
        return v

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"
