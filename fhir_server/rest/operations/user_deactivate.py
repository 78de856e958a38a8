"""$user-deactivate — ``POST [base]/$user-deactivate`` (``username``): the account can no
longer sign in, and every token issued to it is revoked in the same transaction, so its open
sessions stop at their next request (administrators only; not one's own account). Answer:
``user``. 404 for an unknown account."""

from __future__ import annotations

from fhir_server.auth import accounts
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.account_params import OPERATION_BASE, one_account, username
from fhir_server.rest.operations.spec import ADMIN, Operation


def run(ctx: Context, req: FhirRequest) -> Reply:
    return Reply(200, one_account(accounts.set_active(ctx, username(req), False)))


OPERATION = Operation(
    name="user-deactivate",
    definition=OPERATION_BASE + "user-deactivate",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=ADMIN,
    handler=run,
)
