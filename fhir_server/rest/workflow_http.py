"""The workflow operations' HTTP edge: who is acting (their inputs: ``req.params``,
fhir_server/rest/operations/parameters.py).

``actor_of(ctx, req)`` is the ONE place the acting person is taken from a request: the SMART
token's user (its role and ``fhirUser``). A trusted backend service — a client granted
``system/*.cruds``, with no user — may instead act on behalf of a named person with two headers,
``X-Hearth-Role`` (patient | cadre | doctor | pharmacist | admin | ai) and ``X-Hearth-Actor``
(``Practitioner/123``, ``Patient/7``, ``Device/…``), as an integration engine does; the headers
are ignored for every other token. The engine below only ever sees the ``Actor`` built here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fhir_server.rest.context import Context, FhirRequest
from resources.errors import Forbidden, Invalid, Unauthorized
from resources.storage.repository import Unit
from workflow.actors import Actor

ROLE_HEADER = "x-hearth-role"
ACTOR_HEADER = "x-hearth-actor"


def actor_of(ctx: Context, req: FhirRequest) -> Actor:
    """The acting person of a workflow request (see the module doc); 401 when absent."""
    access = ctx.access
    if access is not None and access.username is not None:
        if not access.role or not access.fhir_user:
            raise Forbidden(f"user {access.username} has no role or fhirUser to act with")
        return Actor(access.role, access.fhir_user)
    if access is not None and not access.is_admin:
        raise Forbidden("workflow steps are taken by a signed-in user or a trusted backend")
    role, reference = req.headers.get(ROLE_HEADER), req.headers.get(ACTOR_HEADER)
    if not role or not reference:
        raise Unauthorized(
            "workflow operations need the acting person: X-Hearth-Role and X-Hearth-Actor "
            "(replaced by the SMART token when auth is enabled)"
        )
    if role == "system":
        raise Invalid("the system role is Hearth's own; a request cannot act as it")
    return Actor(role.strip(), reference.strip())


# Why the appointment operations, $start-case, $claim and $complete check the scopes themselves
# (their ``Permission.self_checked``).
APPOINTMENT_SCOPES = (
    "patient_step_scopes (fhir_server/rest/workflow_http.py): Appointment c/u, or for a patient "
    "user read on Appointment and only their own appointments"
)
START_CASE_SCOPES = (
    "patient_step_scopes (fhir_server/rest/workflow_http.py): Task c, or for a patient user "
    "read on Task, a case for themself about a record of their own"
)
STEP_SCOPES = (
    "patient_step_scopes (fhir_server/rest/workflow_http.py): Task u, or for a patient user "
    "read on Task and only a step of their own case (the engine checks the step's performer)"
)


def patient_step_scopes(
    ctx: Context, res_type: str, perm: str, own: tuple[str, ...] = ()
) -> Context:
    """Who may take a workflow step that writes ``res_type`` — ``$book`` (Appointment ``c``),
    ``$accept``, ``$cancel``, ``$reschedule`` (Appointment ``u``), ``$start-case`` (Task ``c``),
    ``$claim`` and ``$complete`` (Task ``u``: a patient's own intake step) — and the Context
    the operation runs with (docs/workflow.md, docs/security.md).

    Care staff and backends need the SMART permission ``perm`` on ``res_type``, as any write. A
    patient user's scopes hold no such write permission (their record is not theirs to rewrite
    through REST); they may take these steps for themself, which the engine checks against their
    ``fhirUser``, with a token that reads ``res_type``. Each reference of ``own`` (the
    appointment changed, the photo a case is about) is first read through the patient's guarded
    repository, so another patient's record — or one still hidden from them, as an unverified
    proposal — answers 404 exactly as an unknown id. The engine then writes (a Slot, the steps'
    Tasks) with the request's audit hook kept and the compartment guard set aside: the engine,
    not the guard, decides what a patient may do."""
    from fhir_server.auth.enforce import require

    access = ctx.access
    if access is None:
        return ctx
    if access.role != "patient" or access.patient is None:
        require(access, res_type, perm)
        return ctx
    require(access, res_type, "r")
    for reference in own:
        kind, _, res_id = reference.partition("/")
        if not res_id:
            raise Invalid(f"{reference!r} is not a reference of the form Type/id")
        ctx.repo.read(_reader(kind, res_id))
    return replace(ctx, repo=ctx.repo.guarded(None, ctx.repo.on_commit, None))


def _reader(res_type: str, res_id: str) -> Callable[[Unit], object]:
    return lambda u: u.read(res_type, res_id)


def parameters(**values: Any) -> dict:
    """A Parameters resource of string values (None left out)."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": k.replace("_", "-"), "valueString": str(v)}
            for k, v in values.items()
            if v is not None
        ],
    }


def deliver_report(ctx: Context, case_id: str):  # type: ignore[no-untyped-def]
    """Deliver (or retry) the final report of case ``case_id`` with this server's SMTP settings
    and report-signing key (workflow/delivery.py); returns its ``Delivery``."""
    from fhir_server.auth.keys import key_store
    from workflow import delivery

    s = ctx.settings
    return delivery.deliver(
        ctx.repo,
        s.smtp(),
        case_id,
        signing_material=lambda: s.report_signing(key_store(ctx.repo.engine, s)),
        facility_name=s.facility_name,
    )
