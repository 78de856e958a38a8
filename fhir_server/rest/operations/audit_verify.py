"""$verify — ``GET [base]/AuditEvent/$verify``: check the audit log as ``hearth audit verify``
does, for administrators over HTTP (the web app's Audit screen). The hash chain is recomputed,
every searchable ``AuditEvent/audit-SEQ`` row is compared with its chained event
(``resources.audit.verify``), and the signed checkpoints this server wrote
(``HEARTH_DATA_DIR/audit/checkpoints.jsonl`` and ``HEARTH_AUDIT_CHECKPOINT_EXPORT``, those that
exist) are checked with the signing key: a log that ends before a checkpoint, or whose
checkpointed row changed, is reported (docs/security.md "Audit").

Answer (``Parameters``, 200 whatever the result): ``intact`` (boolean), ``events`` (integer, the
rows read), ``checkpoints`` (integer), ``newestCheckpoint`` (integer, its event number), and when
not intact ``brokenAt`` (integer, the first broken event) and ``reason`` (string), or
``badCheckpoint`` (string: a checkpoint line that is unsigned or altered). An auditor who does
not trust the server runs ``hearth audit verify --jwks`` with their own copy of the checkpoints.
"""

from __future__ import annotations

from joserfc.jwk import KeySet

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import ADMIN, Operation
from resources import audit


def run(ctx: Context, req: FhirRequest) -> Reply:
    from fhir_server.runtime import audit_anchor

    out: list[dict] = []
    checkpoints: list[audit.Head] = []
    files = [f for f in ctx.settings.audit_checkpoint_files() if f.exists()]
    service = ctx.services.get("auth")
    if files and service is not None:
        keys = KeySet.import_key_set(service.key.jwks())
        for path in files:
            try:
                checkpoints += audit_anchor.read(path, keys)
            except audit_anchor.BadCheckpoint as exc:
                out = [
                    {"name": "intact", "valueBoolean": False},
                    {"name": "badCheckpoint", "valueString": f"{path.name}: {exc}"},
                ]
                return Reply(200, {"resourceType": "Parameters", "parameter": out})
    n, broken = audit.verify(ctx.repo.engine, checkpoints)
    out = [
        {"name": "intact", "valueBoolean": broken is None},
        {"name": "events", "valueInteger": n},
        {"name": "checkpoints", "valueInteger": len(checkpoints)},
    ]
    if checkpoints:
        out.append({"name": "newestCheckpoint", "valueInteger": max(c.seq for c in checkpoints)})
    if broken is not None:
        out.append({"name": "brokenAt", "valueInteger": broken.seq})
        out.append({"name": "reason", "valueString": broken.reason})
    return Reply(200, {"resourceType": "Parameters", "parameter": out})


OPERATION = Operation(
    name="verify",
    definition="http://hearth.local/fhir/OperationDefinition/AuditEvent-verify",
    levels=frozenset({"type"}),
    types=frozenset({"AuditEvent"}),
    methods=frozenset({"GET"}),
    permission=ADMIN,
    handler=run,
)
