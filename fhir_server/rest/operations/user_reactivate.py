"""$user-reactivate — ``POST [base]/$user-reactivate`` (``username``): a deactivated account
may sign in again (its revoked tokens stay revoked). Administrators only. Answer: ``user``;
404 for an unknown account."""

from __future__ import annotations

from fhir_server.auth import accounts
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.account_params import OPERATION_BASE, one_account, username
from fhir_server.rest.operations.spec import ADMIN, Operation


def run(ctx: Context, req: FhirRequest) -> Reply:
    return Reply(200, one_account(accounts.set_active(ctx, username(req), True)))


OPERATION = Operation(
    name="user-reactivate",
    definition=OPERATION_BASE + "user-reactivate",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=ADMIN,
    handler=run,
)
