"""$export — the Bulk Data kick-off request (FHIR Bulk Data Access 2.0.0, export.html#bulk-data-kick-off-request).

``GET|POST [base]/$export`` (system), ``[base]/Patient/$export`` (every patient's compartment),
``[base]/Group/[id]/$export`` (the compartments of the Group's Patient members) and, as HAPI FHIR
allows, ``[base]/Patient/[id]/$export`` (one patient). ``Prefer: respond-async`` is required
(400 otherwise). Parameters come from the query (GET) or a Parameters body (POST): ``_outputFormat``
(``application/fhir+ndjson``, ``application/ndjson``, ``ndjson``), ``_since`` (not in the
future), ``_type``, ``_typeFilter`` (``Type?search``, OR-ed per type), ``_elements`` (``name`` or
``Type.name``, root elements only: the resources written subsetted and tagged ``SUBSETTED``),
``includeAssociatedData`` (``RelevantProvenanceResources``: the Provenance resources that target
an exported resource, ``LatestProvenanceResources``: the newest of those per target; the token
must read Provenance) and, at patient and group level, ``patient``. ``Accept`` must admit
``application/fhir+json`` or be absent (406 otherwise). At patient and group level, ``_type``
names outside the Patient compartment are left out and reported when others are inside it.
Anything else is rejected (400) unless ``Prefer: handling=lenient``, when it is ignored and
reported as an OperationOutcome in the manifest's ``error`` list.

Authorization (SMART Backend Services): a system- or user-level token; only types it may read
at that level are exported. A ``_type`` the token may not read is 403 (lenient: left out).

Answer: 202 with ``Content-Location`` → the status URL (``fhir_server/rest/bulkdata.py``); the job
runs in the background (``resources/jobs/bulk_export.py``, docs/bulk-export.md).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from fhir_server.rest.context import Access, Context, FhirRequest, Reply
from fhir_server.rest.http import FHIR_JSON, accepted, format_value, negotiate_format
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Forbidden, Invalid, NotAcceptable, NotFound
from resources.jobs import bulk_export
from resources.search.compartments import compartment_params
from resources.storage.store import instant
from resources.validation import is_resource_type, resource_types

OUTPUT_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
KNOWN = {
    "_outputFormat",
    "_since",
    "_type",
    "_typeFilter",
    "_elements",
    "includeAssociatedData",
    "patient",
}
# Accept ranges a kick-off answers to (application/json+fhir: the pre-R4 name of the type)
KICKOFF_ACCEPT = {"application/fhir+json", "application/json+fhir", "application/*", "*/*"}
# includeAssociatedData values supported
ASSOCIATED = {"LatestProvenanceResources", "RelevantProvenanceResources"}
ELEMENT = re.compile(r"^(?:(?P<type>[A-Z][A-Za-z]+)\.)?(?P<name>[a-z][A-Za-z0-9]*)$")
ADMIN_ONLY = frozenset({"AuditEvent"})
BULKDATA = "http://hl7.org/fhir/uv/bulkdata"


def _since(raw: str) -> str:
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(f"_since must be a FHIR instant, not {raw!r}") from exc
    if ts.tzinfo is None:
        raise Invalid(f"_since must carry a time zone: {raw!r}")
    try:
        future = ts.astimezone(UTC) > datetime.now(UTC)
    except OverflowError:
        future = ts.year == 9999
    if future:
        raise Invalid(f"_since {raw!r} is in the future: nothing can have changed after it")
    return ts.isoformat()


def _check_accept(req: FhirRequest, lenient: bool) -> None:
    """Bulk Data 2.0.0 kick-off ``Accept``: "Currently, only application/fhir+json is
    supported. [...] If omitted, the server MAY return an error or MAY process the request as if
    application/fhir+json was supplied": an absent ``Accept`` is read as application/fhir+json;
    one that admits neither it nor a wildcard (``application/json``, FHIR XML) is 406, unless a
    ``Prefer: handling=lenient`` request asks for some JSON. ``_format`` (json) wins over it."""
    fmt = req.param("_format")
    accept = req.headers.get("accept", "")
    if fmt:
        if negotiate_format(format_value(fmt), "") == FHIR_JSON:
            return
    elif not accept.strip():
        return
    else:
        kinds = accepted(accept)
        if any(k in KICKOFF_ACCEPT for k in kinds):
            return
        if lenient and negotiate_format(None, accept) == FHIR_JSON:
            return
    raise NotAcceptable(
        "the Bulk Data kick-off answers application/fhir+json only: send "
        "Accept: application/fhir+json (or no Accept)"
    )


def _readable(access: Access, res_type: str) -> bool:
    if res_type in ADMIN_ONLY and not access.is_admin:
        return False
    return access.mode(res_type, "r") == "all"


def _compartment_types() -> set[str]:
    return {"Patient"} | {t for t in resource_types() if compartment_params("Patient", t)}


def _group_patients(ctx: Context, group_id: str) -> list[str]:
    group = ctx.repo.read(lambda u: u.read("Group", group_id)).content or {}
    patients = []
    for member in group.get("member") or []:
        ref = str((member.get("entity") or {}).get("reference", ""))
        res_type, _, res_id = ref.rpartition("/")
        if res_type.endswith("Patient") and res_id:
            patients.append(res_id)
    return patients


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = ctx.access
    assert access is not None  # the gate authorized the request
    if req.prefer.get("respond-async") is None:
        raise Invalid("$export needs the header Prefer: respond-async (Bulk Data kick-off)")
    lenient = req.prefer.get("handling") == "lenient"
    _check_accept(req, lenient)
    issues: list[str] = []

    def reject(text: str, error: type[Exception] = Invalid) -> None:
        if not lenient:
            raise error(text)
        issues.append(text + " (ignored: Prefer: handling=lenient)")

    if req.res_type is None:
        level = "system"
    elif req.res_type == "Patient":
        level = "patient"
    elif req.res_type == "Group" and req.res_id is not None:
        level = "group"
    else:
        raise NotFound("$export is supported on [base], Patient, Patient/[id] and Group/[id]")

    pairs = req.params.pairs()  # the query, or a POST's Parameters body
    since = None
    asked: list[str] | None = None
    filters: list[str] = []
    elements: list[str] = []
    associated: list[str] = []
    patients: list[str] | None = None
    for name, value in pairs:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise Invalid(
                    f"_outputFormat {value!r} is not supported; use application/fhir+ndjson"
                )
        elif name == "_since":
            since = _since(value)
        elif name == "_type":
            asked = (asked or []) + [t.strip() for t in value.split(",") if t.strip()]
        elif name == "_typeFilter":
            filters.append(value)
        elif name == "_elements":
            for e in (e.strip() for e in value.split(",")):
                m = ELEMENT.match(e)
                if m is None or (m["type"] is not None and not is_resource_type(m["type"])):
                    raise Invalid(
                        f"_elements names {e!r}: use name or Type.name (root elements only)"
                    )
                elements.append(e)
        elif name == "includeAssociatedData":
            for v in (v.strip() for v in value.split(",") if v.strip()):
                if v not in ASSOCIATED:
                    reject(
                        f"includeAssociatedData={v} is not supported (only "
                        f"{', '.join(sorted(ASSOCIATED))})"
                    )
                elif not _readable(access, "Provenance"):
                    reject("includeAssociatedData needs read access to Provenance", Forbidden)
                else:
                    associated.append(v)
        elif name == "patient":
            if level == "system":
                reject("the patient parameter applies to Patient and Group level exports only")
                continue
            res_type, _, res_id = value.rpartition("/")
            if res_type != "Patient" or not res_id:
                raise Invalid(f"patient must reference a Patient, not {value!r}")
            patients = (patients or []) + [res_id]
        else:
            reject(f"the $export parameter {name} is not supported")

    if level == "group":
        if not _readable(access, "Group"):
            raise Forbidden("a Group export needs read access to Group at system or user level")
        members = _group_patients(ctx, str(req.res_id))
        patients = [p for p in members if patients is None or p in patients]
    elif level == "patient" and req.res_id is not None:
        ctx.repo.read(lambda u: u.read("Patient", str(req.res_id)))  # 404 for unknown ids
        patients = [req.res_id] if patients is None or req.res_id in patients else []

    allowed_space = _compartment_types() if level != "system" else set(resource_types())
    if asked is not None:
        types: list[str] = []
        outside: list[str] = []
        for t in dict.fromkeys(asked):
            if not is_resource_type(t):
                raise Invalid(f"_type names {t!r}, which is not a FHIR R4 resource type")
            if t not in allowed_space:
                outside.append(t)
            elif not _readable(access, t):
                reject(f"the token's scopes do not allow reading {t} resources", Forbidden)
            else:
                types.append(t)
        if outside:
            text = (
                f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not in the "
                f"Patient compartment, so not part of a {level} export"
            )
            # IG: a request for *only* types outside the compartment SHOULD be an error; with
            # some inside, the others are left out and reported in the manifest's error file
            if len(outside) < len(dict.fromkeys(asked)):
                issues.append(text + " (left out)")
            else:
                reject(text)
    else:
        stored = bulk_export.stored_types(ctx.repo)
        types = [t for t in stored if t in allowed_space and _readable(access, t)]
        if not any(_readable(access, t) for t in allowed_space):
            raise Forbidden("the token's scopes allow reading no resource type at system level")

    type_filters: dict[str, list[list[tuple[str, str]]]] = {}
    for text in filters:
        res_type, sep, query = text.partition("?")
        pairs_ = parse_qsl(query, keep_blank_values=True)
        if not sep or not is_resource_type(res_type) or not pairs_:
            raise Invalid(f"_typeFilter must look like Type?param=value, not {text!r}")
        if res_type not in types:
            continue  # a filter on a type not exported selects nothing more
        try:
            ctx.repo.search.match(res_type, pairs_)  # unknown parameters are reported now
        except Invalid as exc:
            reject(f"_typeFilter {text!r}: {exc.diagnostics}")
            continue
        type_filters.setdefault(res_type, []).append(pairs_)

    spec = bulk_export.Spec(
        types=types,
        since=since,
        type_filters=type_filters,
        compartment=level != "system",
        patients=patients,
        issues=issues,
        elements=elements,
        associated=associated,
        base=ctx.base,
    )
    path = req.path + (f"?{urlencode(req.query)}" if req.query else "")
    job = bulk_export.start(ctx.repo, access.client_id, f"{ctx.base}/{path}", level, spec)
    _run_in_background(ctx, job.id)
    return Reply(
        202,
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"bulk export {job.id} accepted at {instant(job.transaction_time)}",
                }
            ],
        },
        {"Content-Location": status_url(ctx, job.id)},
    )


def status_url(ctx: Context, job_id: str) -> str:
    return f"{ctx.base}/bulkdata/{job_id}"


def _run_in_background(ctx: Context, job_id: str) -> None:
    """Start the job in this process (no worker needed): the API's ``ExportRunner``; the
    queue's claim makes sure a ``hearth worker`` that takes it first never runs it twice."""
    from fhir_server.runtime.bulk_runner import ExportRunner

    runner = ctx.services.get("bulk-export")
    if runner is None:  # a Context built without the app's lifespan
        runner = ctx.services["bulk-export"] = ExportRunner(
            ctx.services.get("repo", ctx.repo), ctx.settings
        )
    runner.submit(job_id)


OPERATION = Operation(
    name="export",
    definition=f"{BULKDATA}/OperationDefinition/export",
    levels=frozenset({"system", "type", "instance"}),
    handler=run,
    types=frozenset({"Patient", "Group"}),
    definitions=(
        ("Patient", f"{BULKDATA}/OperationDefinition/patient-export"),
        ("Group", f"{BULKDATA}/OperationDefinition/group-export"),
    ),
    instantiates=f"{BULKDATA}/CapabilityStatement/bulk-data",
    permission=Permission(
        self_checked=True,
        reason="run: only types the token may read at system or user level are exported",
    ),
)
