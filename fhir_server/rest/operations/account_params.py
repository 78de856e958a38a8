"""Shared by the account operations (``$users``, ``$user-create``, ``$user-deactivate``,
``$user-reactivate``, ``$user-roles``, ``$user-reset-totp``): an account as ``Parameters``
parts, and the ``username`` input. The accounts themselves: ``fhir_server/auth/accounts.py``."""

from __future__ import annotations

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
