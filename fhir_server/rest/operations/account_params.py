"""Shared by the account operations (``$users``, ``$user-create``, ``$user-deactivate``,
``$user-reactivate``, ``$user-roles``, ``$user-reset-totp``): an account as ``Parameters``
parts, and the ``username`` input. The accounts themselves: ``fhir_server/auth/accounts.py``."""

from __future__ import annotations

import base64
import io

import segno

from fhir_server.rest.context import FhirRequest

OPERATION_BASE = "http://hearth.local/fhir/OperationDefinition/"


def account_parts(account: dict) -> list[dict]:
    """``username``, ``name``, ``fhirUser``, ``role`` (repeated), ``active``, ``secondFactor``,
    ``lastSignIn``, ``created``, ``email`` — what is known of them."""
    parts: list[dict] = [{"name": "username", "valueString": account["username"]}]
    if account.get("name"):
        parts.append({"name": "name", "valueString": account["name"]})
    if account.get("fhirUser"):
        parts.append({"name": "fhirUser", "valueReference": {"reference": account["fhirUser"]}})
    parts += [{"name": "role", "valueCode": r} for r in account["roles"]]
    parts.append({"name": "active", "valueBoolean": account["active"]})
    parts.append({"name": "secondFactor", "valueBoolean": account["secondFactor"]})
    if account.get("lastSignIn"):
        parts.append({"name": "lastSignIn", "valueInstant": account["lastSignIn"]})
    parts.append({"name": "created", "valueInstant": account["created"]})
    if account.get("email"):
        parts.append({"name": "email", "valueString": account["email"]})
    return parts


def one_account(account: dict, *extra: dict) -> dict:
    """The answer of an operation on one account: ``user`` (its parts) and ``extra``
    parameters."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "user", "part": account_parts(account)}, *extra],
    }


def username(req: FhirRequest) -> str:
    name = req.params.text("username", fhir_type="string", required=True)
    assert name is not None
    return name


def secret_parts(password: str | None, totp_uri: str | None, codes: list[str]) -> list[dict]:
    """The one-time secrets of a new account or a reset: ``password`` (when generated),
    ``totpUri`` (the otpauth:// provisioning URI), ``totpQr`` (that URI as a QR code, an SVG
    ``Attachment`` for an authenticator app to scan) and ``recoveryCode`` (repeated)."""
    out: list[dict] = []
    if password:
        out.append({"name": "password", "valueString": password})
    if totp_uri:
        out.append({"name": "totpUri", "valueUri": totp_uri})
        svg = io.BytesIO()
        segno.make(totp_uri, error="m").save(svg, kind="svg", scale=4, title="Authenticator")
        out.append(
            {
                "name": "totpQr",
                "valueAttachment": {
                    "contentType": "image/svg+xml",
                    "data": base64.b64encode(svg.getvalue()).decode(),
                    "title": "Authenticator QR code",
                },
            }
        )
    out += [{"name": "recoveryCode", "valueString": c} for c in codes]
    return out
