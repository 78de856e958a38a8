"""$users — ``GET [base]/$users``: every account of this server, for administrators (the web
app's Users screen). A ``Parameters`` with one ``user`` per account (ordered by username), each
with the parts ``username``, ``name`` (of its Practitioner / Patient), ``fhirUser``, ``role``
(repeated: ``admin`` and the care roles of its Practitioner's active PractitionerRoles, or
``patient``), ``active``, ``secondFactor`` (a TOTP is enrolled), ``lastSignIn``, ``created``,
``email``. Secrets never leave the server. Optional ``active`` (boolean) keeps only active or
deactivated accounts. docs/security.md "Administering accounts"."""

from __future__ import annotations

from fhir_server.auth import accounts
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.account_params import OPERATION_BASE, account_parts
from fhir_server.rest.operations.spec import ADMIN, Operation


def run(ctx: Context, req: FhirRequest) -> Reply:
    wanted = req.params.boolean("active") if req.params.has("active") else None
    found = accounts.list_accounts(ctx)
    return Reply(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "user", "part": account_parts(a)}
                for a in found
                if wanted is None or a["active"] is wanted
            ],
        },
    )


OPERATION = Operation(
    name="users",
    definition=OPERATION_BASE + "users",
    levels=frozenset({"system"}),
    methods=frozenset({"GET"}),
    permission=ADMIN,
    handler=run,
)
