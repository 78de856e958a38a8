"""One table from typed errors to HTTP status, and the handlers that render OperationOutcomes.

Client errors are logged as warnings, faults as errors with their traceback; a fault's response
never carries internals. Log lines name the request (``X-Request-ID``), its method and path (the
resource type and id) and the outcome's issue codes, never the diagnostics: those quote what the
client sent (``fhir_server/runtime/logsafe.py``).
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_server.rest.headers import SECURITY_HEADERS, request_id
from fhir_server.rest.http import fhir_response
from resources import errors as e
from resources.storage.db import UNAVAILABLE, unavailable

log = logging.getLogger("hearth.errors")

STATUS: dict[type[e.FhirError], int] = {
    e.Invalid: 400,
    e.NotSupported: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.MethodNotAllowed: 405,
    e.NotAcceptable: 406,
    e.Conflict: 409,
    e.Gone: 410,
    e.PreconditionFailed: 412,
    e.MultipleMatches: 412,
    e.TooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.Unprocessable: 422,
    e.Unavailable: 503,
}

# Seconds a client should wait before retrying a 503 (the database did not answer).
RETRY_AFTER = "5"


def status_of(exc: e.FhirError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def outcome(code: str, diagnostics: str, severity: str = "error") -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


_HTTP_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def error_response(request: Request, exc: e.FhirError, *, plain_json: bool = False) -> Response:
    """The OperationOutcome reply to ``exc`` (logged); ``plain_json``: written as JSON with
    ``Content-Type: application/json`` whatever the request accepts (the Bulk Data status
    endpoint's error form)."""
    status = status_of(exc)
    codes = ",".join(sorted({i["code"] for i in exc.outcome().get("issue", [])}))
    log.warning(
        "request %s: %s %s -> %d (%s)",
        request_id(request.scope),
        request.method,
        request.url.path,
        status,
        codes,
    )
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hearth"'
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER
    if isinstance(exc, e.MethodNotAllowed) and exc.allow:
        headers["Allow"] = ", ".join(exc.allow)
    if plain_json:
        return Response(
            content=orjson.dumps(exc.outcome()),
            status_code=status,
            media_type="application/json",
            headers={"Cache-Control": "no-store", **headers},
        )
    return fhir_response(request, exc.outcome(), status=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers: FhirError, FastAPI's own 4xx, and anything unexpected."""

    @app.exception_handler(e.FhirError)
    async def _fhir_error(request: Request, exc: e.FhirError):  # type: ignore[no-untyped-def]
        return error_response(request, exc)

    async def _unavailable(request: Request, exc: Exception):  # type: ignore[no-untyped-def]
        # The database refused or dropped the connection, or the pool had none to give: the
        # request may well succeed later. Logged without the statement or its parameters.
        if not unavailable(exc):
            return await _fault(request, exc)
        log.error(
            "%s %s -> 503: database unavailable (%s)",
            request.method,
            request.url.path,
            type(getattr(exc, "orig", None) or exc).__name__,
        )
        outcome_ = e.Unavailable("the database is not available; retry later").outcome()
        return fhir_response(request, outcome_, status=503, headers={"Retry-After": RETRY_AFTER})

    for cls in UNAVAILABLE:
        app.add_exception_handler(cls, _unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):  # type: ignore[no-untyped-def]
        code = _HTTP_CODES.get(exc.status_code, "processing")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"no FHIR endpoint at {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        log.warning(
            "request %s: %s %s -> %d (%s)",
            request_id(request.scope),
            request.method,
            request.url.path,
            exc.status_code,
            code,
        )
        return fhir_response(request, outcome(code, detail), status=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError):  # type: ignore[no-untyped-def]
        detail = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in exc.errors())
        return fhir_response(request, outcome("invalid", detail), status=400)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception):  # type: ignore[no-untyped-def]
        rid = request_id(request.scope)
        log.error("request %s: %s %s -> 500", rid, request.method, request.url.path, exc_info=exc)
        return fhir_response(
            request,
            outcome("exception", "internal server error; the fault was logged"),
            status=500,
            # Starlette answers a fault outside every middleware: the headers come from here
            headers={**SECURITY_HEADERS, "X-Request-ID": rid},
        )
