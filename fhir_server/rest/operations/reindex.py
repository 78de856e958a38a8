"""$reindex — re-index stored resources after search parameters change (as HAPI FHIR's
``$reindex``): ``POST [base]/$reindex`` or ``POST [base]/[type]/$reindex`` starts a job and runs
it to the end (or, with ``Prefer: respond-async``, returns 202 with the job to poll at
``GET [base]/$reindex?job=ID``). Returns a Parameters resource with the job's progress."""

from __future__ import annotations

import threading

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import ADMIN, Operation
from resources.jobs import reindex


def _parameters(job: reindex.Job) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "job", "valueString": job.id},
            {"name": "type", "valueString": job.res_type or "*"},
            {"name": "processed", "valueInteger": job.done_count},
            {"name": "total", "valueInteger": job.total},
            {"name": "finished", "valueBoolean": job.finished},
        ],
    }


def status(ctx: Context, req: FhirRequest) -> Reply:
    """``GET [base]/$reindex?job=ID``: a job's progress (without ``job``: every unfinished
    job). Changes nothing."""
    job_id = req.params.text("job")
    if job_id:
        return Reply(200, _parameters(reindex.get(ctx.repo, job_id)))
    jobs = reindex.unfinished(ctx.repo)
    return Reply(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "job", "part": _parameters(j)["parameter"]} for j in jobs],
        },
    )


def run(ctx: Context, req: FhirRequest) -> Reply:
    job = reindex.start(ctx.repo, req.res_type)
    if req.prefer.get("respond-async") is not None:
        threading.Thread(target=reindex.run_to_end, args=(ctx.repo, job.id), daemon=True).start()
        return Reply(
            202, _parameters(job), {"Content-Location": f"{ctx.base}/$reindex?job={job.id}"}
        )
    return Reply(200, _parameters(reindex.run_to_end(ctx.repo, job.id)))


OPERATION = Operation(
    name="reindex",
    definition="http://hearth.local/fhir/OperationDefinition/reindex",
    levels=frozenset({"system", "type"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    poll=status,
    permission=ADMIN,
)
