"""$user-create — ``POST [base]/$user-create``: a staff account (administrators only).

Inputs (a ``Parameters`` body; never the query, which is audited): ``username`` (string,
required), ``role`` (code, repeated, at least one of ``cadre``, ``doctor``, ``pharmacist``,
``admin``), ``practitioner`` (Reference to an existing Practitioner) or ``family`` / ``given``
(strings: a new Practitioner is created), ``email`` (string), ``password`` (string, 10 to 1024
characters; when absent one is generated and returned once). Each care role becomes an active
PractitionerRole of the Practitioner (where its tokens' role comes from); ``admin`` is the
account's admin flag. Answer 201: ``user`` (as ``$users`` shows it), ``password`` (only when
generated), ``totpUri`` (the otpauth:// provisioning URI of the required second factor) and
``totpQr`` (the same as a QR code, an SVG Attachment, for the user's authenticator app to scan)
and ``recoveryCode`` × 8 — shown once. 409 when the
username is taken; 400 naming the input for the rest."""

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
from resources.errors import Invalid


def run(ctx: Context, req: FhirRequest) -> Reply:
    if any(k == "password" for k, _ in req.query):
        raise Invalid("$user-create: the password goes in the body, never in the URL")
    p = req.params
    name = username(req)
    made = accounts.create(
        ctx,
        name,
        roles=p.texts("role", fhir_type="code"),
        password=p.text("password", fhir_type="string"),
        practitioner=p.reference("practitioner"),
        family=p.text("family", fhir_type="string"),
        given=p.texts("given", fhir_type="string"),
        email=p.text("email", fhir_type="string"),
    )
    extra = secret_parts(made.password, made.totp_uri, made.recovery_codes)
    return Reply(201, one_account(made.account, *extra), {"Cache-Control": "no-store"})


OPERATION = Operation(
    name="user-create",
    definition=OPERATION_BASE + "user-create",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=ADMIN,
    handler=run,
)
