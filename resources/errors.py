"""Typed FHIR errors ("anomalies").

Every failure that reaches a client is one of these. Each class carries a FHIR ``IssueType`` code
(http://hl7.org/fhir/R4/valueset-issue-type.html) and a list of issues; the HTTP edge maps the
class to a status code from one table (``fhir_server.rest.errors.STATUS``) and renders an
OperationOutcome. Nothing below the HTTP edge knows about status codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    code: str  # IssueType: invalid, structure, required, value, not-found, conflict, ...
    diagnostics: str
    severity: str = "error"  # fatal | error | warning | information
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class FhirError(Exception):
    """Base class: a failure with one or more issues."""

    issue_code = "processing"

    def __init__(
        self,
        diagnostics: str,
        issues: Iterable[Issue] | None = None,
        *,
        expression: Sequence[str] = (),
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.issues = list(issues or []) or [
            Issue(code=self.issue_code, diagnostics=diagnostics, expression=tuple(expression))
        ]

    def outcome(self) -> dict:
        return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in self.issues]}


# The kinds of failure. The HTTP status of each lives in fhir_server.rest.errors.STATUS.
class Invalid(FhirError):
    """The request or the resource content is not valid (400)."""

    issue_code = "invalid"


class Unprocessable(FhirError):
    """Well-formed, but fails validation or a business rule (422)."""

    issue_code = "processing"


class NotFound(FhirError):
    """No such resource, type, version or endpoint (404)."""

    issue_code = "not-found"


class Gone(FhirError):
    """The resource was deleted (410)."""

    issue_code = "deleted"


class MethodNotAllowed(FhirError):
    """The interaction is not allowed here (405); ``allow``: the methods that are (the
    ``Allow`` header)."""

    issue_code = "not-supported"

    def __init__(
        self, diagnostics: str, issues: Iterable[Issue] | None = None, *, allow: Sequence[str] = ()
    ) -> None:
        super().__init__(diagnostics, issues)
        self.allow = tuple(allow)


class Conflict(FhirError):
    """The request conflicts with the current state (409)."""

    issue_code = "conflict"


class PreconditionFailed(FhirError):
    """If-Match (version) or a conditional criterion failed (412)."""

    issue_code = "conflict"


class MultipleMatches(PreconditionFailed):
    """A conditional interaction matched more than one resource (412)."""

    issue_code = "multiple-matches"


class TooLarge(FhirError):
    """The request body exceeds the configured limit (413)."""

    issue_code = "too-costly"


class UnsupportedMediaType(FhirError):
    """The request content type is not supported (415)."""

    issue_code = "not-supported"


class NotAcceptable(FhirError):
    """No representation the client accepts (406)."""

    issue_code = "not-supported"


class NotSupported(FhirError):
    """Recognised, but not implemented by this server (400)."""

    issue_code = "not-supported"


class Unauthorized(FhirError):
    """Missing or bad credentials (401)."""

    issue_code = "login"


class Forbidden(FhirError):
    """Authenticated, but not allowed (403)."""

    issue_code = "forbidden"


class Unavailable(FhirError):
    """The database (or another service the request needs) is not answering; retry later
    (503 with ``Retry-After``)."""

    issue_code = "transient"
