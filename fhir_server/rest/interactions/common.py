"""What the interactions share: rendering a stored version per ``Prefer: return``, and the
refusal of parameters an interaction does not know under ``Prefer: handling=strict``."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import version_headers
from resources.errors import Invalid, Issue
from resources.storage.repository import WriteResult

# What read and vread take (http.html#read, search.html#summary / #elements; _format, _pretty).
READ_PARAMETERS = frozenset({"_summary", "_elements", "_format", "_pretty"})


def refuse_unknown(req: FhirRequest, known: frozenset[str], what: str) -> None:
    """Under ``Prefer: handling=strict`` a parameter the interaction does not know is the
    request's error (400, each issue of severity ``error``); otherwise it is ignored."""
    unknown = sorted({k for k, _ in req.query} - known)
    if unknown and req.prefer.get("handling") == "strict":
        raise Invalid(
            f"unknown {what} parameters (Prefer: handling=strict)",
            [
                Issue("not-supported", f"parameter {k!r} is not supported on {what}")
                for k in unknown
            ],
        )


_STATUS = {"created": 201, "updated": 200, "unchanged": 200, "exists": 200}


def write_reply(ctx: Context, req: FhirRequest, result: WriteResult) -> Reply:
    """201 with Location for a new resource, 200 otherwise; body per ``Prefer: return``."""
    stored = result.stored
    status = _STATUS[result.status]
    headers = version_headers(stored)
    if status == 201:
        headers["Location"] = f"{ctx.base}/{stored.versioned_ref}"
    wanted = req.prefer.get("return", "representation")
    if wanted == "minimal":
        return Reply(status, None, headers)
    if wanted == "operationoutcome":
        text = {
            "created": f"created {stored.versioned_ref}",
            "updated": f"updated {stored.versioned_ref}",
            "unchanged": f"no change: {stored.ref} stays at version {stored.version}",
            "exists": f"a matching resource exists: {stored.ref}",
        }[result.status]
        return Reply(status, info_outcome(text), headers)
    return Reply(status, stored.content, headers)


def info_outcome(text: str) -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    }
