"""$user-reset-totp — ``POST [base]/$user-reset-totp`` (``username``): reset the account's
second factor (a lost phone). A staff account gets a new TOTP seed — the answer carries its
``totpUri`` (otpauth:// provisioning URI), ``totpQr`` (it as an SVG QR code) and 8 fresh
``recoveryCode``s, shown once, for the administrator to hand over —; a patient's account loses its optional TOTP (they may enrol again
at /auth/account/totp). The old seed and recovery codes stop working and the account's tokens
are revoked. Administrators only, not on their own account. 404 for an unknown account."""

from __future__ import annotations

from fhir_server.auth import accounts
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.account_params import (
    OPERATION_BASE,
    one_account,
    secret_parts,
    username,
)
from fhir_server.rest.operations.spec import ADMIN, Operation


def run(ctx: Context, req: FhirRequest) -> Reply:
    done = accounts.reset_second_factor(ctx, username(req))
    extra = secret_parts(None, done.totp_uri, done.recovery_codes)
    return Reply(200, one_account(done.account, *extra), {"Cache-Control": "no-store"})


OPERATION = Operation(
    name="user-reset-totp",
    definition=OPERATION_BASE + "user-reset-totp",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=ADMIN,
    handler=run,
)
