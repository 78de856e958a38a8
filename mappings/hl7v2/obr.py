"""OBR → DiagnosticReport, after the V2-to-FHIR IG segment map "OBR[DiagnosticReport]"
(``mappings/segments/HL7 Segment - FHIR R4_ OBR[DiagnosticReport] - OBR.csv``): OBR-2 (or ORC-2)
→ identifier type PLAC, OBR-3 (or ORC-3) → identifier type FILL, OBR-4 → code, OBR-7 →
effectiveDateTime (effectivePeriod.start with OBR-8 → end), OBR-22 → issued, OBR-24 → category
(table 0074), OBR-25 → status (ResultStatus[Non-Queries]); OBR-32 → resultsInterpreter, OBR-34 /
OBR-35 → performer (PractitionerRoles, made by ``segments.Builder`` from the OBR the report
names in ``SEGMENT_KEY``). Pure functions: no I/O.
"""

from __future__ import annotations

from mappings.hl7v2 import codes
from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Segment
from mappings.hl7v2.errors import missing
from mappings.hl7v2.mapping import MapContext


def order_identifiers(obr: Segment, orc: Segment | None, ctx: MapContext) -> dict[str, dict]:
    """{"PLAC": Identifier, "FILL": Identifier} from OBR-2/OBR-3, else ORC-2/ORC-3."""
    out = {}
    for kind, n in (("PLAC", 2), ("FILL", 3)):
        rep = obr.first(n) or (orc.first(n) if orc is not None else None)
        ident = dt.ei(rep, ctx.default_system) if rep else None
        if ident:
            ident["type"] = {"coding": [{"system": codes.V2 + "0203", "code": kind}]}
            out[kind] = ident
    return out


def effective(obr: Segment, ctx: MapContext) -> dict:
    start = dt.date_time(obr.value(7), ctx.tz, obr.where(7))
    end = dt.date_time(obr.value(8), ctx.tz, obr.where(8))
    if start and end:
        return {"effectivePeriod": {"start": start, "end": end}}
    if start:
        return {"effectiveDateTime": start}
    return {}


# The key naming the report's OBR (its index in the message) until its roles are made.
SEGMENT_KEY = "_obr"


def diagnostic_report(
    obr: Segment, orc: Segment | None, subject: str, results: list[str], ctx: MapContext
) -> dict:
    code = dt.cwe(obr.first(4))
    if code is None:
        raise missing(obr.where(4), "universal service identifier")
    res: dict = {
        "resourceType": "DiagnosticReport",
        "status": codes.REPORT_STATUS.get(obr.value(25).upper(), "unknown"),
        "code": code,
        "subject": {"reference": subject},
    }
    idents = list(order_identifiers(obr, orc, ctx).values())
    if idents:
        res["identifier"] = idents
    category = dt.table_concept(obr.first(24), "0074")
    if category:
        res["category"] = [category]
    res.update(effective(obr, ctx))
    issued = dt.instant(obr.value(22), ctx.tz, obr.where(22))
    if issued:
        res["issued"] = issued
    if results:
        res["result"] = [{"reference": r} for r in results]
    res[SEGMENT_KEY] = obr.index
    return res
