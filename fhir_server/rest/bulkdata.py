"""The Bulk Data status and file endpoints (FHIR Bulk Data Access 2.0.0, export.html): where a
``$export`` kick-off's ``Content-Location`` points.

- ``GET [base]/bulkdata/[job]``: 202 with ``X-Progress`` and ``Retry-After`` while the job runs;
  200 with the complete-status manifest (``transactionTime``, ``request``,
  ``requiresAccessToken: true``, ``output`` [{type, url, count}], ``error``) when it is done;
  500 with an OperationOutcome when it failed (the IG's error status).
- ``DELETE [base]/bulkdata/[job]``: cancel the job and delete its files: 202.
- ``GET [base]/bulkdata/[job]/[file]``: one NDJSON file, ``application/fhir+ndjson``.

Each needs a bearer token of the client that started the job, or an administrator's; another
client gets 403. A file download also needs read access, at system or user level, to the file's
resource type in the downloading token's own scopes (403 otherwise). Every request is audited like the other operations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import gate
from fhir_server.rest.context import Access, Context
from fhir_server.rest.errors import error_response, status_of
from fhir_server.rest.http import fhir_response
from resources.errors import FhirError, Forbidden
from resources.jobs import bulk_export
from resources.storage.store import instant

router = APIRouter()
RETRY_AFTER_SECONDS = "2"


def _owned(ctx: Context, access: Access, job_id: str) -> bulk_export.Export:
    job = bulk_export.get(ctx.repo, job_id)
    if job.client_id != access.client_id and not access.is_admin:
        raise Forbidden("this bulk export belongs to another client")
    return job


async def _audited(request: Request, fn: Callable[[Context, Access], Any]) -> Any:
    """Authenticate (401), run ``fn`` in the thread pool, and audit the outcome with the
    request (method and path: which job, which file) as the event's query entity."""
    ctx = request.app.state.context
    auth = request.app.state.auth
    access, ip = await gate.authenticate_operation(request)

    def audit(status: int, detail: str | None = None) -> None:
        query = f"{request.method} {request.url.path.removeprefix('/fhir/')}"
        auth.audit(
            gate.access_event(
                ctx,
                access,
                ip,
                interaction="operation",
                status=status,
                what=[],
                query=query,
                detail=detail,
            )
        )

    try:
        status, result = await run_in_threadpool(fn, ctx, access)
    except FhirError as exc:
        audit(status_of(exc), exc.diagnostics)
        raise
    audit(status)
    return result


def _manifest(ctx: Context, job: bulk_export.Export) -> dict:
    url = f"{ctx.base}/bulkdata/{job.id}"
    return {
        "transactionTime": instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": True,
        "output": [
            {"type": o["type"], "url": f"{url}/{o['file']}", "count": o["count"]}
            for o in job.output
        ],
        "error": [
            {"type": e["type"], "url": f"{url}/{e['file']}", "count": e["count"]} for e in job.error
        ],
    }


@router.get("/bulkdata/{job_id}")
async def status(request: Request, job_id: str) -> Response:
    def run(ctx: Context, access: Access) -> tuple[int, Response]:
        job = _owned(ctx, access, job_id)
        if job.state == bulk_export.COMPLETED:
            return 200, fhir_response(request, _manifest(ctx, job), status=200)
        if job.state == bulk_export.FAILED:
            body = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": job.failure}],
            }
            # JSON whatever the Accept: the IG's error status form
            return 500, Response(
                content=orjson.dumps(body),
                status_code=500,
                media_type="application/json",
                headers={"Cache-Control": "no-store"},
            )
        progress = job.progress or job.state
        return 202, Response(
            status_code=202,
            headers={"X-Progress": progress[:100], "Retry-After": RETRY_AFTER_SECONDS},
        )

    try:
        response = await _audited(request, run)
    except FhirError as exc:
        return error_response(request, exc, plain_json=True)
    if response.status_code == 200:  # the manifest is plain JSON (IG: application/json)
        response.headers["content-type"] = "application/json"
    return response


@router.delete("/bulkdata/{job_id}")
async def cancel(request: Request, job_id: str) -> Response:
    def run(ctx: Context, access: Access) -> tuple[int, Response]:
        _owned(ctx, access, job_id)
        bulk_export.cancel(ctx.repo, ctx.settings.blobs(ctx.repo.engine), job_id)
        body = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"bulk export {job_id} cancelled; its files are deleted",
                }
            ],
        }
        return 202, fhir_response(request, body, status=202)

    try:
        return await _audited(request, run)
    except FhirError as exc:  # a cancelled or unknown job: 404, in the status URL's error form
        return error_response(request, exc, plain_json=True)


def _may_read_file(access: Access, job: bulk_export.Export, name: str) -> None:
    """A file of resources is read with the token's scopes as they are now (Bulk Data 2.0
    "the client SHALL be authorized to access the data"): its type must be readable at system
    or user level by the token that downloads it, not only by the one that started the job."""
    listed = next((o for o in job.output if o.get("file") == name), None)
    if listed is None or access.is_admin:
        return  # an error file, or no such file (file_path answers 404)
    res_type = str(listed.get("type"))
    if access.mode(res_type, "r") != "all":
        raise Forbidden(f"the token's scopes do not allow reading {res_type} resources")


@router.get("/bulkdata/{job_id}/{name}")
async def download(request: Request, job_id: str, name: str) -> Response:
    def run(ctx: Context, access: Access) -> tuple[int, Response]:
        job = _owned(ctx, access, job_id)
        _may_read_file(access, job, name)
        f = bulk_export.open_file(ctx.settings.blobs(ctx.repo.engine), job, name)
        size = f.seek(0, 2)
        f.seek(0)

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(1 << 20):
                    yield chunk

        return 200, StreamingResponse(
            chunks(),
            media_type="application/fhir+ndjson",
            headers={"Content-Length": str(size)},
        )

    return await _audited(request, run)
