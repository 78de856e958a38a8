"""ORU^R01 (unsolicited observation result) → a transaction Bundle, after the V2-to-FHIR IG
message map "ORU_R01": PID → Patient, each OBR → DiagnosticReport (``obr.py``) with the
Observations of its OBX segments (``obx.py``) as results; NTE after an OBX → its note.

The Patient is a conditional create (``ifNoneExist``): a lab result never rewrites demographics.
A DiagnosticReport with an order number is a conditional update on it (filler OBR-3/ORC-3 first,
else placer OBR-2/ORC-2), so a corrected result replaces the preliminary one; each Observation
then gets the identifier OBX-21, or one made of that order number, OBX-3 and OBX-4, and is a
conditional update on it. Without an order number reports and observations are created.
An OBX without OBX-3 is left out with a warning (ERR severity W in the ACK). Pure functions.
"""

from __future__ import annotations

from urllib.parse import quote

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2 import obr as obr_map
from mappings.hl7v2 import obx as obx_map
from mappings.hl7v2.adt import patient_entry
from mappings.hl7v2.er7 import Message, Segment
from mappings.hl7v2.mapping import MapContext, entry, search_token

OBSERVATION_SYSTEM = "urn:hearth:hl7v2:observation:"


def _groups(
    message: Message,
) -> list[tuple[Segment | None, Segment | None, list[tuple[Segment, list[str]]]]]:
    """(ORC, OBR, [(OBX, notes)]) in message order; OBX before any OBR form a group of their own."""
    groups: list = []
    orc: Segment | None = None
    current: list | None = None
    last_obx: tuple | None = None
    for seg in message.segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "OBR":
            current = [orc, seg, []]
            groups.append(current)
            orc, last_obx = None, None
        elif seg.name == "OBX":
            if current is None:
                current = [None, None, []]
                groups.append(current)
            last_obx = (seg, [])
            current[2].append(last_obx)
        elif seg.name == "NTE" and last_obx is not None:
            text = " ".join(r.text() for r in seg.reps(3)).strip()
            if text:
                last_obx[1].append(text)
    return [tuple(g) for g in groups]


def _observation_identifier(order: dict | None, obx: Segment, seen: dict[str, int]) -> dict | None:
    """The identifier made of the order number, OBX-3 and OBX-4. An OBX that repeats an earlier
    one's OBX-3 and OBX-4 in the same order (a sender that leaves OBX-4 empty) gets ``/2``,
    ``/3`` … after it, by position, so each OBX is its own Observation and a corrected message
    with the same segments finds each again."""
    if order is None:
        return None
    code = obx.first(3)
    if code is None:
        return None
    system = OBSERVATION_SYSTEM + quote(order.get("system", ""), safe="")
    parts = [order["value"], code.c(3) or "-", code.c(1) or code.c(2), obx.value(4) or "-"]
    value = "/".join(parts)
    seen[value] = seen.get(value, 0) + 1
    if seen[value] > 1:
        value += f"/{seen[value]}"
    return {"system": system, "value": value}


def bundle(message: Message, ctx: MapContext) -> dict:
    patient_url, patient = patient_entry(message, ctx, update=False)
    entries = [patient]
    for orc, obr, observations in _groups(message):
        order = None
        if obr is not None:
            ids = obr_map.order_identifiers(obr, orc, ctx)
            order = ids.get("FILL") or ids.get("PLAC")
        default_time = None
        if obr is not None:
            eff = obr_map.effective(obr, ctx)
            default_time = eff.get("effectiveDateTime") or eff.get("effectivePeriod", {}).get(
                "start"
            )
        results = []
        seen: dict[str, int] = {}
        for obx, notes in observations:
            ident = _observation_identifier(order, obx, seen)
            res = obx_map.observation(
                obx, notes, patient_url, ctx, default_time=default_time, identifier=ident
            )
            if res is None:
                continue
            url = ctx.full_url()
            results.append(url)
            key = res.get("identifier", [None])[0]
            if key is not None:
                query = "identifier=" + search_token(key.get("system"), key["value"])
                entries.append(entry(url, res, "PUT", f"Observation?{query}"))
            else:
                entries.append(entry(url, res, "POST", "Observation"))
        if obr is None:
            continue
        report = obr_map.diagnostic_report(obr, orc, patient_url, results, ctx)
        url = ctx.full_url()
        if order is not None:
            query = "identifier=" + search_token(order.get("system"), order["value"])
            entries.append(entry(url, report, "PUT", f"DiagnosticReport?{query}"))
        else:
            entries.append(entry(url, report, "POST", "DiagnosticReport"))
    _ = dt  # the data types are used through the segment maps
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
