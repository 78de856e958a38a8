"""The per-request context and the parsed request every interaction receives.

Built once per request by the router; interactions never touch Starlette objects, so the same
code serves HTTP calls and is easy to test. (Identity and scopes join this context with SMART
auth.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.settings import Settings
from resources.repository import Repository


@dataclass
class Context:
    repo: Repository
    settings: Settings
    # Per-process services built on first use (e.g. "ai.analyzer": the loaded models).
    services: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.settings.fhir_base


@dataclass
class FhirRequest:
    method: str
    path: str  # path below the FHIR base, e.g. "Patient/1/_history"
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    prefer: dict[str, str] = field(default_factory=dict)
    body: Any = None
    res_type: str | None = None
    res_id: str | None = None
    vid: str | None = None

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None

    def criteria(self) -> list[tuple[str, str]]:
        """Query parameters that are search criteria (not _format/_pretty)."""
        return [(k, v) for k, v in self.query if k not in ("_format", "_pretty")]


@dataclass
class Reply:
    status: int
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
