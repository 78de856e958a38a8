"""$user-roles — ``POST [base]/$user-roles`` (``username``, ``role`` code repeated: the whole
new set of ``cadre`` / ``doctor`` / ``pharmacist`` / ``admin``): the account's roles become
exactly those. Care roles are the Practitioner's PractitionerRoles (one no longer wanted is set
``active: false``, a wanted inactive one is made active again, a missing one is created);
``admin`` is the account's flag. The account's tokens are revoked, so the new roles hold from
its next sign-in. Administrators only, not on their own admin role. Answer: ``user``; 404 for
an unknown account, 400 for a care role on an account without a Practitioner or a patient's
account."""

from __future__ import annotations

from fhir_server.auth import accounts
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.account_params import OPERATION_BASE, one_account, username
from fhir_server.rest.operations.spec import ADMIN, Operation


def run(ctx: Context, req: FhirRequest) -> Reply:
    name = username(req)
    roles = req.params.texts("role", fhir_type="code")
    return Reply(200, one_account(accounts.set_roles(ctx, name, roles)))


OPERATION = Operation(
    name="user-roles",
    definition=OPERATION_BASE + "user-roles",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=ADMIN,
    handler=run,
)
