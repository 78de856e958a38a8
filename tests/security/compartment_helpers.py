"""Tokens and comparison helpers for the patient-compartment tests (tests/security)."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import httpx

from fhir_server.auth.scopes import Scopes
from fhir_server.auth.tokens import issue
from fhir_server.runtime.settings import Settings
from tests.fhir_server.auth.smart import bearer, make_client, make_user, store_of


def user_token(server, role: str, fhir_user: str, scope: str, patient: str) -> dict:  # type: ignore[no-untyped-def]
    """A token for a user of ``role`` (``patient``: fhirUser is the Patient) with ``patient`` in
    context, as the authorization endpoint issues it after a login."""
    user = make_user(server, role, fhir_user, totp=False)
    client_id, _ = make_client(server, "confidential-symmetric", scope, redirect=None)
    store = store_of(server)
    try:
        settings = Settings(database_url=server.database_url, base_url=server.root)
        body = issue(
            store,
            settings,
            None,
            client_id=client_id,
            scope=Scopes.parse(scope),
            # what the authorization endpoint records at a login (fhir_server/auth/roles.py)
            context={"patient": patient, "role": role, "fhir_user": fhir_user},
            username=user.username,
            with_refresh=False,
        )
    finally:
        store.engine.dispose()
    return bearer(body["access_token"])


def shape(resp: httpx.Response, *values: str, new_ids: bool = False) -> tuple[int, str]:
    """What a response tells: its status and body with the guessed ``values`` (which a
    searchset's links repeat) replaced, without the Bundle's own ``id`` and ``meta`` (a fresh id
    and timestamp per response); ``new_ids``: also without the id, ``meta`` and ``Location`` of a
    resource the request created (a new id each time)."""
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if isinstance(body, dict):
        if body.get("resourceType") == "Bundle" or new_ids:
            body = {k: v for k, v in body.items() if k not in ("id", "meta")}
        if body.get("resourceType") == "Bundle" and new_ids:
            body["entry"] = [_no_new_ids(e) for e in body.get("entry", [])]
    text = json.dumps(body, sort_keys=True)
    location = resp.headers.get("location", "") if not new_ids else ""
    for v in values:
        for form in (v, quote(v, safe=""), quote_plus(v, safe="")):
            text = text.replace(form, "GUESS")
    return resp.status_code, text + location


def _no_new_ids(entry: dict) -> dict:
    entry = {k: v for k, v in entry.items() if k != "fullUrl"}
    if isinstance(entry.get("resource"), dict):
        entry["resource"] = {k: v for k, v in entry["resource"].items() if k not in ("id", "meta")}
    if isinstance(entry.get("response"), dict):
        entry["response"] = {
            k: v
            for k, v in entry["response"].items()
            if k not in ("location", "etag", "lastModified")
        }
    return entry
