"""$import -- the Bulk Data import kick-off (SMART "bulk-import" proposal, ping and pull of
NDJSON files, as HAPI FHIR's ``$import`` does it): ``POST [base]/$import`` with
``Prefer: respond-async``.

The body is a ``Parameters`` resource (HAPI FHIR's form): ``inputFormat``
(``application/fhir+ndjson``; also ``application/ndjson``, ``ndjson``), ``inputSource`` (uri,
optional; stamped as ``meta.source`` on resources that have none, as the proposal advises),
``storageDetail`` (parts ``type`` = ``https``, ``maxBatchResourceCount``) and one ``input`` per
file (parts ``type``, ``url``). The proposal's plain JSON body (``{"inputFormat": ..., "input":
[{"type", "url"}], "storageDetail": {"type": "https"}}``) is taken as well. Not supported, and
refused with 400: other input formats, ``storageDetail.type`` other than ``https``,
``contentEncoding`` other than none, and HAPI's ``credentialHttpBasic`` (Hearth keeps no source
credentials; use signed URLs). The ping-and-pull proposal's ``exportUrl`` with ``exportType``
``static`` (a finished export's manifest, whose output files become the inputs) is taken too;
``dynamic`` is 400.

Who may import (checked here, before anything is fetched): an administrator (an ``admin`` user
or a ``system/*.cruds`` client) or a client named in ``HEARTH_IMPORT_CLIENTS``, and in either
case a token with system-level create and update scopes on every input's type. Each input URL
must pass ``fhir_server/runtime/import_runner.py`` ``url_problem`` (https, a host of
``HEARTH_IMPORT_ALLOWED_HOSTS``): any other is refused with 403 naming it.

Answer: 202 with ``Content-Location`` -> the status URL (``fhir_server/rest/bulkimport.py``);
the job runs in the background (``resources/jobs/bulk_import.py``, docs/bulk-import.md).
"""

from __future__ import annotations

from typing import Any

from fhir_server.rest.context import Access, Context, FhirRequest, Reply
from fhir_server.rest.operations.parameters import QUERY, RESOURCE, Input
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.runtime.import_runner import url_problem
from resources import audit
from resources.errors import Forbidden, Invalid
from resources.jobs import bulk_import
from resources.storage.store import instant
from resources.validation import is_resource_type, resource_types

INPUT_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
KNOWN = {"inputFormat", "inputSource", "storageDetail", "input", "exportUrl", "exportType"}
MAX_INPUTS = 1000
BODY = "request"  # the input a plain JSON (non-Parameters) body stands for
STRING_VALUES = ("valueString", "valueCode", "valueUri", "valueUrl", "valueCanonical")


def _value(part: dict) -> Any:
    for key in (*STRING_VALUES, "valueInteger", "valuePositiveInt", "valueUnsignedInt"):
        if key in part:
            return part[key]
    return None


def _parts(given: Input) -> dict[str, list[Any]]:
    """A ``part`` parameter's parts, by name."""
    if given.kind != "part" or not isinstance(given.value, list):
        raise Invalid(f"$import: {given.name} takes parts", expression=given.expression)
    out: dict[str, list[Any]] = {}
    for p in given.value:
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            out.setdefault(p["name"], []).append(_value(p))
    return out


def _one(parts: dict[str, list[Any]], name: str, where: str) -> Any:
    values = parts.get(name) or []
    if len(values) > 1:
        raise Invalid(f"$import: {where}.{name} is given {len(values)} times")
    return values[0] if values else None


def _request(req: FhirRequest) -> dict:
    """The kick-off's inputs as one plain dict, from a Parameters body (HAPI FHIR) or the
    proposal's JSON body: inputFormat, inputSource, storageDetail {type, ...}, input [{type,
    url}]."""
    params = req.params
    bodies = [i for i in params.inputs if i.kind == RESOURCE and i.name == BODY]
    if bodies:  # the proposal's plain JSON body
        raw = bodies[0].value
        assert isinstance(raw, dict)
        unknown = sorted(set(raw) - KNOWN - {"resourceType"})
        if unknown:
            raise Invalid(f"the $import parameter {unknown[0]} is not supported")
        given_detail = raw.get("storageDetail") or {}
        inputs = raw.get("input", [])
        if not isinstance(given_detail, dict) or not isinstance(inputs, list):
            raise Invalid("$import: storageDetail must be an object and input a list")
        return {
            "inputFormat": raw.get("inputFormat"),
            "inputSource": raw.get("inputSource"),
            "storageDetail": given_detail,
            "input": [i if isinstance(i, dict) else {} for i in inputs],
            "exportUrl": raw.get("exportUrl"),
            "exportType": raw.get("exportType"),
        }
    for given in params.inputs:
        if given.name not in KNOWN:
            raise Invalid(
                f"the $import parameter {given.name} is not supported",
                expression=given.expression,
            )
        if given.kind == QUERY:
            raise Invalid("$import takes its parameters in a Parameters body, not the query")
    detail: dict[str, Any] = {}
    details = params.all("storageDetail")
    if len(details) > 1:
        raise Invalid("$import: storageDetail is given more than once")
    if details:
        for name, values in _parts(details[0]).items():
            detail[name] = (
                values if name == "contentEncoding" else _one({name: values}, name, "storageDetail")
            )
    inputs = []
    for given in params.all("input"):
        parts = _parts(given)
        inputs.append({"type": _one(parts, "type", "input"), "url": _one(parts, "url", "input")})
    return {
        "inputFormat": params.text("inputFormat"),
        "inputSource": params.text("inputSource"),
        "storageDetail": detail,
        "input": inputs,
        "exportUrl": params.text("exportUrl"),
        "exportType": params.text("exportType"),
    }


def _batch_size(ctx: Context, detail: dict) -> int:
    size = ctx.settings.import_batch_size
    asked = detail.get("maxBatchResourceCount")
    if asked is None:
        return size
    try:
        n = int(asked)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise Invalid(
            f"$import: maxBatchResourceCount must be a positive whole number, not {asked!r}"
        )
    return min(size, n)


def _writable(access: Access) -> list[str]:
    """The types ``access`` may create and update at system level (never AuditEvent)."""
    return [
        t
        for t in resource_types()
        if t != audit.TYPE and all("system" in access.scopes.contexts_for(t, p) for p in ("c", "u"))
    ]


def _may_import(ctx: Context, access: Access, types: list[str]) -> None:
    if access.patient is not None:
        raise Forbidden("a patient-context token cannot $import")
    if not (access.is_admin or access.client_id in ctx.settings.import_client_ids):
        raise Forbidden("$import needs an administrator or a client named in HEARTH_IMPORT_CLIENTS")
    missing = [
        t
        for t in types
        if not all("system" in access.scopes.contexts_for(t, p) for p in ("c", "u"))
    ]
    if missing:
        raise Forbidden(
            "the token's scopes do not allow creating and updating "
            + ", ".join(missing)
            + " resources at system level (system/[type].cu)"
        )


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = ctx.access
    assert access is not None  # the gate authorized the request
    if req.prefer.get("respond-async") is None:
        raise Invalid("$import needs the header Prefer: respond-async (Bulk Data kick-off)")
    asked = _request(req)
    fmt = asked["inputFormat"]
    if not fmt and asked["exportUrl"] is None:  # ping and pull: an export's files are NDJSON
        raise Invalid("$import: inputFormat is required (application/fhir+ndjson)")
    if fmt and fmt not in INPUT_FORMATS:
        raise Invalid(f"$import: inputFormat {fmt!r} is not supported; use application/fhir+ndjson")
    source = asked["inputSource"]
    if source is not None and not isinstance(source, str):
        raise Invalid("$import: inputSource must be a uri")
    detail = asked["storageDetail"]
    if detail.get("type") not in (None, "https"):
        raise Invalid(f"$import: storageDetail type {detail['type']!r} is not supported (https)")
    if detail.get("credentialHttpBasic") is not None:
        raise Invalid(
            "$import: credentialHttpBasic is not supported (Hearth keeps no source "
            "credentials); give signed URLs"
        )
    given_encodings = detail.get("contentEncoding") or []
    if not isinstance(given_encodings, list):
        given_encodings = [given_encodings]
    encodings = [e for e in given_encodings if e not in ("identity", "")]
    if encodings:
        raise Invalid(f"$import: contentEncoding {encodings[0]!r} is not supported")
    unknown = sorted(set(detail) - {"type", "maxBatchResourceCount", "contentEncoding"})
    if unknown:
        raise Invalid(f"$import: storageDetail {unknown[0]} is not supported")
    inputs: list[bulk_import.Input] = []
    for n, given in enumerate(asked["input"], 1):
        res_type, url = given.get("type"), given.get("url")
        if not isinstance(res_type, str) or not isinstance(url, str) or not res_type or not url:
            raise Invalid(f"$import: input {n} needs a type and a url")
        if not is_resource_type(res_type):
            raise Invalid(f"$import: input {n} names {res_type!r}, not a FHIR R4 resource type")
        if res_type == audit.TYPE:
            raise Invalid("$import: AuditEvents live in the append-only audit log; not importable")
        inputs.append(bulk_import.Input(res_type, url))
    export_url, export_type = asked["exportUrl"], asked["exportType"]
    if export_url is not None or export_type is not None:
        # the ping-and-pull proposal: a static export's manifest, whose files are the inputs
        if inputs:
            raise Invalid("$import: give either input files or an exportUrl, not both")
        if not isinstance(export_url, str) or not export_url:
            raise Invalid("$import: exportType needs an exportUrl")
        if export_type != "static":
            raise Invalid(
                f"$import: exportType {export_type or 'dynamic (the default)'} is not supported: "
                "Hearth runs no export on another server; give exportType static and the URL "
                "of a finished export's manifest"
            )
    elif not inputs:
        raise Invalid("$import: at least one input (type, url) is required")
    if len(inputs) > MAX_INPUTS:
        raise Invalid(f"$import: at most {MAX_INPUTS} inputs per job")
    _may_import(ctx, access, sorted({i.type for i in inputs}))
    writable = None
    if export_url is not None:
        writable = _writable(access)
        if not writable:
            raise Forbidden(
                "the token's scopes allow creating and updating no type at system level"
            )
    for url in [i.url for i in inputs] + ([export_url] if export_url else []):
        problem = url_problem(ctx.settings, url)  # nothing is fetched unless every one is allowed
        if problem is not None:
            raise Forbidden(problem)
    spec = bulk_import.Spec(
        inputs=inputs,
        input_source=source,
        batch_size=_batch_size(ctx, detail),
        max_errors=ctx.settings.import_max_errors,
        manifest_url=export_url,
        writable=writable,
    )
    who = {"username": access.username, "fhir_user": access.fhir_user}
    job = bulk_import.start(ctx.repo, access.client_id, who, f"{ctx.base}/$import", spec)
    _run_in_background(ctx, job.id)
    return Reply(
        202,
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"bulk import {job.id} accepted at "
                    f"{instant(job.transaction_time)}: "
                    + (f"{len(inputs)} input(s)" if inputs else f"the files of {export_url}"),
                }
            ],
        },
        {"Content-Location": status_url(ctx, job.id)},
    )


def status_url(ctx: Context, job_id: str) -> str:
    return f"{ctx.base}/bulkdata-import/{job_id}"


def _run_in_background(ctx: Context, job_id: str) -> None:
    """Start the job in this process (the API's ``ImportRunner``); the queue's claim makes
    sure a ``hearth worker`` that takes it first never runs it twice."""
    from fhir_server.runtime.import_runner import ImportRunner

    runner = ctx.services.get("bulk-import")
    if runner is None:  # a Context built without the app's lifespan
        runner = ctx.services["bulk-import"] = ImportRunner(
            ctx.services.get("repo", ctx.repo), ctx.settings
        )
    runner.submit(job_id)


OPERATION = Operation(
    name="import",
    definition="http://hearth.local/fhir/OperationDefinition/import",
    levels=frozenset({"system"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    bare_resource=BODY,  # the proposal's plain JSON body
    permission=Permission(
        self_checked=True,
        reason="run: an administrator or a HEARTH_IMPORT_CLIENTS client, with system-level "
        "create and update on every input type",
    ),
)
