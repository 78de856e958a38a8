"""OBX → Observation, after the V2-to-FHIR IG segment map "OBX[Observation]" (``mappings/segments/
HL7 Segment - FHIR R4_ OBX[Observation] - OBX.csv``): OBX-3 → code, OBX-5 by OBX-2 → value[x]
(NM → valueQuantity; ST, TX, FT → valueString; CE, CWE, CNE, CF, IS → valueCodeableConcept;
SN → valueQuantity with comparator, valueRange or valueRatio; NR → valueRange; DT, DTM, TS →
valueDateTime; TM → valueTime; RP → valueString), OBX-6 → the quantity's unit (CWE[Quantity],
UCUM), OBX-7 → referenceRange, OBX-8 → interpretation (InterpretationCodes), OBX-11 → status
(ObservationResultStatusCodesInterpretation; X and N also dataAbsentReason), OBX-14 →
effectiveDateTime, OBX-16 → performer, OBX-17 → method, OBX-20 → bodySite, OBX-21 →
identifier; NTE after the OBX → note. Pure functions: no I/O.
"""

from __future__ import annotations

import re

from mappings.hl7v2 import codes
from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Segment
from mappings.hl7v2.mapping import MapContext

DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_COMPARED = re.compile(r"^\s*(<=|>=|<|>|=)?\s*([-+]?\d+(?:\.\d+)?)\s*$")
_RANGE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*-\s*([-+]?\d+(?:\.\d+)?)\s*$")


def _quantity(value: int | float, unit: dict, comparator: str = "") -> dict:
    q: dict = {"value": value, **unit}
    if comparator and comparator != "=":
        q["comparator"] = comparator
    return q


def _structured_numeric(comparator: str, n1: str, sep: str, n2: str, unit: dict) -> dict | None:
    """SN[Quantity], SN[Range], SN[Ratio]: the value[x] key and value, or None."""
    a, b = dt.number(n1), dt.number(n2)
    if a is None:
        return None
    if not sep and b is None:
        return {"valueQuantity": _quantity(a, unit, comparator)}
    if sep == "-" and b is not None and not comparator:
        return {"valueRange": {"low": _quantity(a, unit), "high": _quantity(b, unit)}}
    if sep in (":", "/") and b is not None and not comparator:
        return {"valueRatio": {"numerator": _quantity(a, unit), "denominator": {"value": b}}}
    return None


def value(obx: Segment, ctx: MapContext) -> dict:
    """The value[x] of OBX-5 read by its OBX-2 type (empty when OBX-5 is)."""
    kind = obx.value(2).upper()
    reps = obx.reps(5)
    if not reps:
        return {}
    first = reps[0]
    unit = dt.unit(obx.first(6))
    if len(reps) > 1 and kind not in ("TX", "FT", "ST"):
        ctx.warn(
            "102", f"OBX-5 repeats for type {kind}: the first repetition is kept", obx.where(5)
        )
    if kind == "NM":
        number = dt.number(first.c(1))
        if number is not None:
            return {"valueQuantity": _quantity(number, unit)}
        m = _COMPARED.match(first.c(1))
        compared = dt.number(m.group(2)) if m else None
        if m and compared is not None:
            return {"valueQuantity": _quantity(compared, unit, m.group(1) or "")}
        ctx.warn("102", f"OBX-5 {first.c(1)!r} is not a number: kept as text", obx.where(5))
        return {"valueString": first.text()}
    if kind == "SN":
        found = _structured_numeric(first.c(1), first.c(2), first.c(3), first.c(4), unit)
        if found is not None:
            return found
        return {"valueString": " ".join(p for p in (first.c(i) for i in (1, 2, 3, 4)) if p)}
    if kind in ("CE", "CWE", "CNE", "CF", "IS", "ID"):
        concept = dt.cwe(first)
        return {"valueCodeableConcept": concept} if concept else {}
    if kind in ("DT", "DTM", "TS"):
        when = dt.date_time(first.c(1), ctx.tz, obx.where(5))
        return {"valueDateTime": when} if when else {}
    if kind == "TM":
        t = dt.time_of_day(first.c(1))
        return {"valueTime": t} if t else {"valueString": first.text()}
    if kind == "NR":
        low, high = dt.number(first.c(1)), dt.number(first.c(2))
        rng: dict = {}
        if low is not None:
            rng["low"] = _quantity(low, unit)
        if high is not None:
            rng["high"] = _quantity(high, unit)
        return {"valueRange": rng} if rng else {}
    if kind in ("ST", "TX", "FT"):
        sep = "\n" if kind in ("TX", "FT") else " "
        return {"valueString": sep.join(r.text() for r in reps)}
    if kind == "RP":
        return {"valueString": first.c(1)}
    ctx.warn(
        "102",
        f"OBX-2 value type {kind or '(none)'} is not mapped: the value is left out",
        obx.where(2),
    )
    return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT, "code": "unsupported"}]}}


def reference_range(text: str, unit: dict) -> dict:
    out: dict = {"text": text}
    m = _RANGE.match(text)
    if m:
        out["low"] = {"value": dt.number(m.group(1)), **unit}
        out["high"] = {"value": dt.number(m.group(2)), **unit}
        return out
    m = _COMPARED.match(text)
    if m and m.group(1) in ("<", "<="):
        out["high"] = {"value": dt.number(m.group(2)), **unit}
    elif m and m.group(1) in (">", ">="):
        out["low"] = {"value": dt.number(m.group(2)), **unit}
    return out


def interpretation(obx: Segment) -> list[dict]:
    out = []
    for rep in obx.reps(8):
        code = rep.c(1)
        if not code:
            continue
        system = (
            codes.INTERPRETATION if code.upper() in codes.V3_INTERPRETATION else codes.V2 + "0078"
        )
        if rep.c(3) and not rep.c(3).upper().startswith("HL7"):
            system = codes.coding_system(rep.c(3)) or system
        coding = {
            "system": system,
            "code": code.upper() if system == codes.INTERPRETATION else code,
        }
        if rep.c(2):
            coding["display"] = rep.c(2)
        out.append({"coding": [coding]})
    return out


def observation(
    obx: Segment,
    notes: list[str],
    subject: str,
    ctx: MapContext,
    *,
    default_time: str | None = None,
    identifier: dict | None = None,
) -> dict | None:
    """The Observation of one OBX; None (with a warning) when OBX-3 gives no code."""
    code = dt.cwe(obx.first(3))
    if code is None:
        ctx.warn(
            "101", "OBX-3 (observation identifier) is empty: the OBX is not stored", obx.where(3)
        )
        return None
    status_code = obx.value(11).upper()
    res: dict = {
        "resourceType": "Observation",
        "status": codes.OBSERVATION_STATUS.get(status_code, "unknown"),
        "code": code,
        "subject": {"reference": subject},
    }
    filler = obx.first(21)
    ident = dt.ei(filler, ctx.default_system) if filler else identifier
    if ident:
        res["identifier"] = [ident]
    effective = dt.date_time(obx.value(14), ctx.tz, obx.where(14)) or default_time
    if effective:
        res["effectiveDateTime"] = effective
    res.update(value(obx, ctx))
    if status_code in ("X", "N") and not any(k.startswith("value") for k in res):
        reason = "not-asked" if status_code == "N" else "error"
        res["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": reason}]}
    ranges = obx.first(7)
    if ranges and ranges.text().strip():
        res["referenceRange"] = [reference_range(ranges.text().strip(), dt.unit(obx.first(6)))]
    interp = interpretation(obx)
    if interp:
        res["interpretation"] = interp
    performers = [p for p in (dt.xcn_reference(r, ctx.default_system) for r in obx.reps(16)) if p]
    if performers:
        res["performer"] = performers
    method = dt.cwe(obx.first(17))
    if method:
        res["method"] = method
    site = dt.cwe(obx.first(20))
    if site:
        res["bodySite"] = site
    if notes:
        res["note"] = [{"text": n} for n in notes]
    return res
