"""$evaluate-measure — ``GET|POST [base]/Measure/[id]/$evaluate-measure``: the screening
programme's figures as a FHIR MeasureReport (R4 measure-operation-evaluate-measure.html,
OperationDefinition ``Measure-evaluate-measure``).

Inputs: ``periodStart`` and ``periodEnd`` (``date``, required: the cases started — or the
appointments starting — on those days and the days between), ``reportType`` (``population``, the
default; ``summary`` is read as the same). Population figures only: ``subject``, a ``reportType`` of
``subject`` or ``subject-list``, ``practitioner``, ``lastReceivedOn`` and ``measure`` (this is the
instance level) are refused with 400 ``not-supported``, any other input with 400 ``invalid``.

The Measure is read from the server (404 when not stored; ``hearth db upgrade`` stores the
shipped ones, docs/analytics.md) and computed by ``workflow/analytics.py`` from the stored
resources, by its canonical URL; a Measure Hearth does not ship is refused (400). The answer is a
``summary`` MeasureReport (not stored).

Who may ask: a token that reads Measure and reads every type the figures count (Task,
Observation, Appointment, Practitioner, PractitionerRole, Organization, Location) at user or
system level — doctors and administrators. The figures count every patient's cases, so a
patient-context token (a patient, or an app launched for one) is refused (403), whatever its
scopes: a population count would tell it about other patients.
"""

from __future__ import annotations

from fhir_server.auth.enforce import require
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Forbidden, Invalid, NotSupported
from resources.storage.store import instant
from workflow import analytics

KNOWN = frozenset({"periodStart", "periodEnd", "reportType"})
UNSUPPORTED = frozenset({"subject", "practitioner", "lastReceivedOn", "measure"})
READS = (
    "Task",
    "Observation",
    "Appointment",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
)
POPULATION = ("population", "summary")


def _check_access(ctx: Context) -> None:
    access = ctx.access
    if access is None:
        return
    if access.patient is not None or access.role == "patient":
        raise Forbidden(
            "$evaluate-measure counts every patient's records: it is not available to a "
            "patient-context token"
        )
    for res_type in READS:
        if require(access, res_type, "r") != "all":
            raise Forbidden(f"$evaluate-measure needs read access to every {res_type}")


def _check_inputs(req: FhirRequest) -> str:
    names = {i.name for i in req.params.inputs}
    unsupported = sorted(names & UNSUPPORTED)
    if unsupported:
        text = (
            f"$evaluate-measure: Hearth reports population figures only; parameter "
            f"{unsupported[0]!r} is not supported"
        )
        raise NotSupported(text)
    unknown = sorted(names - KNOWN - UNSUPPORTED)
    if unknown:
        raise Invalid(f"$evaluate-measure: unknown parameter {unknown[0]!r}")
    report_type = req.params.text("reportType", fhir_type="code") or "population"
    if report_type in ("subject", "subject-list"):
        text = f"$evaluate-measure: reportType {report_type!r} is not supported (population only)"
        raise NotSupported(text)
    if report_type not in POPULATION:
        raise Invalid(
            f"$evaluate-measure: reportType must be subject, subject-list or population, not "
            f"{report_type!r}"
        )
    return report_type


def run(ctx: Context, req: FhirRequest) -> Reply:
    _check_access(ctx)
    _check_inputs(req)
    start = req.params.text("periodStart", required=True) or ""
    end = req.params.text("periodEnd", required=True) or ""
    analytics.check_period(start, end)
    res_id = req.res_id or ""

    def evaluate(u):  # type: ignore[no-untyped-def]
        measure = u.read("Measure", res_id).resource
        return analytics.evaluate(u, measure, start, end, instant(ctx.repo.clock()))

    return Reply(200, ctx.repo.read(evaluate))


OPERATION = Operation(
    name="evaluate-measure",
    definition="http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
    levels=frozenset({"instance"}),
    types=frozenset({"Measure"}),
    permission=Permission.on_type("r"),
    handler=run,
)
