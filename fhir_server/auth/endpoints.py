"""The authorization server's HTTP endpoints (SMART App Launch 2.2, RFC 6749/7636/7009/7662),
one module per concern, gathered into one router: discovery, authorize (login and patient
picker), grants (token, revoke, introspect), account (password reset, TOTP enrolment), register (self-registration), admin."""

from __future__ import annotations

from fastapi import APIRouter

from fhir_server.auth import account, admin, authorize, discovery, grants, register

router = APIRouter(include_in_schema=False)
for _module in (discovery, authorize, grants, account, register, admin):
    router.include_router(_module.router)
