"""The Bulk Data import status endpoints (SMART "bulk-import" proposal): where a ``$import``
kick-off's ``Content-Location`` points.

- ``GET [base]/bulkdata-import/[job]``: 202 with ``X-Progress`` and ``Retry-After`` while the
  job runs (or waits to be retried); 200 with the result manifest when it is done
  (``transactionTime``, ``request``, ``requiresAccessToken: true``, ``output`` and ``error``
  with one entry per input: ``inputUrl``/``input``, ``count``); 500 with an OperationOutcome when
  it failed.
- ``DELETE [base]/bulkdata-import/[job]``: cancel: 202; then 404.
- ``GET [base]/bulkdata-import/[job]/error-[n].ndjson``: the OperationOutcomes of input n's bad
  lines (``application/fhir+ndjson``), each naming its line.

Each needs a bearer token of the client that started the job, or an administrator's (403
otherwise); every request is audited like the export's status requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from fhir_server.rest.bulkdata import _audited  # the Bulk Data endpoints' shared audit wrapper
from fhir_server.rest.context import Access, Context
from fhir_server.rest.errors import error_response
from fhir_server.rest.http import fhir_response
from resources.errors import FhirError, Forbidden, NotFound
from resources.jobs import bulk_import
from resources.storage.store import instant

router = APIRouter()
RETRY_AFTER_SECONDS = "2"
ERROR_FILE = re.compile(r"^error-([1-9][0-9]{0,5})\.ndjson$")


def _owned(ctx: Context, access: Access, job_id: str) -> bulk_import.Import:
    job = bulk_import.get(ctx.repo, job_id)
    if job.client_id != access.client_id and not access.is_admin:
        raise Forbidden("this bulk import belongs to another client")
    return job


def manifest(ctx: Context, job: bulk_import.Import) -> dict:
    """The complete-status body: one ``output`` entry per input (its resources imported) and
    one ``error`` entry per input with bad lines (a file of their OperationOutcomes)."""
    url = f"{ctx.base}/bulkdata-import/{job.id}"
    output, error, counts = [], [], []
    for n, (given, c) in enumerate(zip(job.spec.inputs, job.counts(), strict=True), 1):
        entry = {"type": "OperationOutcome", "inputUrl": given.url, "input": given.url}
        output.append({**entry, "count": c["count"]})
        if c["errors"]:
            error.append({**entry, "count": c["errors"], "url": f"{url}/error-{n}.ndjson"})
        counts.append(
            {"input": given.url, "type": given.type}
            | {k: c[k] for k in ("created", "updated", "unchanged")}
        )
    return {
        "transactionTime": instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": True,
        "output": output,
        "error": error,
        "extension": {"http://hearth.local/fhir/import-counts": counts},
    }


@router.get("/bulkdata-import/{job_id}")
async def status(request: Request, job_id: str) -> Response:
    def run(ctx: Context, access: Access) -> tuple[int, Response]:
        job = _owned(ctx, access, job_id)
        if job.state == bulk_import.COMPLETED:
            return 200, fhir_response(request, manifest(ctx, job), status=200)
        if job.state == bulk_import.FAILED:
            body = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": job.failure}],
            }
            # JSON whatever the Accept: the proposal's error status form, as $export's
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
    except FhirError as exc:  # 401, 403, 404: in the status URL's error form
        return error_response(request, exc, plain_json=True)
    if response.status_code == 200:  # the manifest is plain JSON (the proposal)
        response.headers["content-type"] = "application/json"
    return response


@router.delete("/bulkdata-import/{job_id}")
async def cancel(request: Request, job_id: str) -> Response:
    def run(ctx: Context, access: Access) -> tuple[int, Response]:
        _owned(ctx, access, job_id)
        bulk_import.cancel(ctx.repo, job_id)
        body = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"bulk import {job_id} cancelled; batches already written stay",
                }
            ],
        }
        return 202, fhir_response(request, body, status=202)

    try:
        return await _audited(request, run)
    except FhirError as exc:  # a cancelled or unknown job: 404, in the status URL's error form
        return error_response(request, exc, plain_json=True)


@router.get("/bulkdata-import/{job_id}/{name}")
async def error_file(request: Request, job_id: str, name: str) -> Response:
    def run(ctx: Context, access: Access) -> tuple[int, Response]:
        job = _owned(ctx, access, job_id)
        m = ERROR_FILE.match(name)
        if m is None:
            raise NotFound(f"no file {name!r} in bulk import {job_id}")
        lines = bulk_import.error_lines(ctx.repo, job, int(m[1]) - 1)
        first = next(lines, b"")  # NotFound here, before the answer starts

        def chunks() -> Iterator[bytes]:
            if first:
                yield first
            yield from lines

        return 200, StreamingResponse(chunks(), media_type="application/fhir+ndjson")

    return await _audited(request, run)
