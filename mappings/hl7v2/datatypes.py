"""HL7 v2 data types → FHIR R4 data types, after the V2-to-FHIR IG data type maps
(``mappings/datatypes/`` of the IG): CX[Identifier], EI[Identifier-Extension], HD[uri],
XPN[HumanName], XAD[Address], XTN[ContactPoint], CWE[CodeableConcept], CWE[Quantity],
XCN[Practitioner] (as a logical reference), DTM[dateTime].

Timestamps keep their precision: ``YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]`` becomes a FHIR
date or dateTime of the same precision. FHIR needs a time zone once there is a time: the value's
own offset is used, else the message's MSH-7 offset, else the offset the caller passes (the
server's); with none of those the value is cut to its date rather than given a wrong zone.
Pure functions: no I/O.
"""

from __future__ import annotations

import re
from datetime import date as _date
from datetime import time as _time
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from mappings.hl7v2 import codes
from mappings.hl7v2.er7 import Composite
from mappings.hl7v2.errors import Hl7Error

LOCAL_ASSIGNER = "urn:hearth:hl7v2:assigner:"

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


def offset(value: str) -> str | None:
    """The ``+HHMM``/``-HHMM`` offset of a DTM, as FHIR writes it (``+HH:MM``), or None."""
    m = _DTM.match(value.strip())
    if m is None or m.group(8) is None:
        return None
    z = m.group(8)
    return f"{z[:3]}:{z[3:]}"


def date_time(value: str, tz: str | None, where: str = "") -> str | None:
    """A DTM as a FHIR dateTime with its own precision (None for an empty value); AE 102 when it
    is not a timestamp. ``tz`` is the offset used when the value has none."""
    value = value.strip()
    if not value:
        return None
    m = _DTM.match(value)
    if m is None:
        raise Hl7Error(
            "AE", "102", f"{where or 'a timestamp'}: {value!r} is not an HL7 DTM", location=where
        )
    y, mo, d, h, mi, s, frac, z = m.groups()
    try:
        _date(int(y), int(mo or 1), int(d or 1))
        _time(int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        raise Hl7Error(
            "AE", "102", f"{where or 'a timestamp'}: {value!r} is not a valid date", location=where
        ) from None
    day = "-".join(p for p in (y, mo, d) if p)
    if h is None or d is None:
        return day
    zone = f"{z[:3]}:{z[3:]}" if z else tz
    if zone is None:
        return day  # no zone known: the date only, never a wrong instant
    if zone in ("+00:00", "-00:00"):
        zone = "Z" if zone == "+00:00" else zone
    seconds = f"{s or '00'}" + (f".{frac}" if frac and s else "")
    return f"{day}T{h}:{mi or '00'}:{seconds}{zone}"


def birth_date(value: str, where: str) -> str | None:
    """A DTM cut to a FHIR date (Patient.birthDate)."""
    full = date_time(value, None, where)
    return full[:10] if full else None


def instant(value: str, tz: str | None, where: str) -> str | None:
    """A DTM as a FHIR instant (needs seconds and a zone), or None when it has less."""
    full = date_time(value, tz, where)
    if full is None or "T" not in full:
        return None
    return full


def time_of_day(value: str) -> str | None:
    m = _TM.match(value.strip())
    if m is None:
        return None
    h, mi, s, frac, _ = m.groups()
    out = f"{h}:{mi or '00'}:{s or '00'}"
    return out + (f".{frac}" if frac and s else "")


def number(value: str) -> int | float | None:
    """An NM as a JSON number (integers stay integers), None when it is not one."""
    value = value.strip()
    if not value:
        return None
    try:
        d = Decimal(value.lstrip("+"))
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value() and "." not in value and "e" not in value.lower():
        return int(d)
    return float(d)


def hd_system(namespace: str, universal: str, kind: str) -> str | None:
    """HD[uri]: the system named by a hierarchic designator. An ISO OID (HD.3 ISO) → urn:oid,
    a UUID → urn:uuid, a URI → itself; else the namespace (HD.1) in Hearth's local namespace."""
    kind = kind.upper()
    if universal:
        if kind == "ISO" or (not kind and all(p.isdigit() for p in universal.split("."))):
            return f"urn:oid:{universal}"
        if kind == "UUID":
            return f"urn:uuid:{universal.lower()}"
        if kind in ("URI", "URL") or "://" in universal or universal.startswith("urn:"):
            return universal
    if namespace:
        if "://" in namespace or namespace.startswith("urn:"):
            return namespace
        return LOCAL_ASSIGNER + quote(namespace, safe="")
    if universal:
        return LOCAL_ASSIGNER + quote(universal, safe="")
    return None


def identifier_type(code: str) -> dict:
    coding = {"system": codes.V2 + "0203", "code": code}
    if code in codes.IDENTIFIER_TYPE:
        coding["display"] = codes.IDENTIFIER_TYPE[code]
    return {"coding": [coding]}


def cx(c: Composite, default_system: str | None, where: str) -> dict | None:
    """CX[Identifier]: CX.1 value, CX.4 assigning authority → system (the sending facility
    CX.6 assigning facility, else MSH-4, when CX.4 is empty), CX.5 → type (table 0203), CX.7/CX.8 → period."""
    value = c.c(1)
    if not value:
        return None
    out: dict = {"value": value}
    # CX.4 assigning authority, else CX.6 assigning facility (the namespace the id is unique in)
    system = (
        hd_system(c.c(4, 1), c.c(4, 2), c.c(4, 3))
        or hd_system(c.c(6, 1), c.c(6, 2), c.c(6, 3))
        or default_system
    )
    if system:
        out["system"] = system
    if c.c(5):
        out["type"] = identifier_type(c.c(5))
    period = {}
    for key, comp in (("start", 7), ("end", 8)):
        when = date_time(c.c(comp), None, where) if c.c(comp) else None
        if when:
            period[key] = when
    if period:
        out["period"] = period
    return out


def ei(c: Composite, default_system: str | None = None) -> dict | None:
    """EI[Identifier]: EI.1 value, EI.2-4 (namespace, universal id, type) → system."""
    value = c.c(1)
    if not value:
        return None
    out: dict = {"value": value}
    system = hd_system(c.c(2), c.c(3), c.c(4)) or default_system
    if system:
        out["system"] = system
    return out


def xpn(c: Composite) -> dict | None:
    """XPN[HumanName]: XPN.1.1 family, XPN.2/XPN.3 given, XPN.4 and XPN.6 suffix, XPN.5 prefix,
    XPN.7 use (NameType)."""
    out: dict = {}
    family = c.c(1, 1)
    if family:
        out["family"] = family
    given = [g for g in (c.c(2), c.c(3)) if g]
    if given:
        out["given"] = given
    if c.c(5):
        out["prefix"] = [c.c(5)]
    suffix = [s for s in (c.c(4), c.c(6)) if s]
    if suffix:
        out["suffix"] = suffix
    if not out:
        return None
    use = codes.NAME_USE.get(c.c(7).upper())
    if use:
        out["use"] = use
    return out


def xad(c: Composite) -> dict | None:
    """XAD[Address]: XAD.1.1 and XAD.2 lines, XAD.3 city, XAD.4 state, XAD.5 postalCode,
    XAD.6 country, XAD.7 use/type (AddressType), XAD.9 district."""
    out: dict = {}
    lines = [x for x in (c.c(1, 1), c.c(2)) if x]
    if lines:
        out["line"] = lines
    for key, comp in (
        ("city", 3),
        ("state", 4),
        ("postalCode", 5),
        ("country", 6),
        ("district", 9),
    ):
        if c.c(comp):
            out[key] = c.c(comp)
    if not out:
        return None
    kind = c.c(7).upper()
    if kind in codes.ADDRESS_USE:
        out["use"] = codes.ADDRESS_USE[kind]
    if kind in codes.ADDRESS_TYPE:
        out["type"] = codes.ADDRESS_TYPE[kind]
    return out


def xtn(c: Composite, default_use: str) -> dict | None:
    """XTN[ContactPoint]: XTN.4 (e-mail) or XTN.12 or XTN.5-8 (number) or XTN.1 (the old
    form) → value, XTN.2 → use, XTN.3 → system."""
    equipment = c.c(3).upper()
    system = codes.TELECOM_SYSTEM.get(equipment)
    value = ""
    if equipment in ("INTERNET", "X.400") or (c.c(4) and "@" in c.c(4)):
        value, system = c.c(4), "email"
    elif c.c(12):
        value = c.c(12)
    elif c.c(7):
        parts = [("+" + c.c(5)) if c.c(5) else "", c.c(6), c.c(7)]
        value = " ".join(p for p in parts if p) + (f" X{c.c(8)}" if c.c(8) else "")
    if not value:
        value = c.c(1)
    if not value:
        return None
    out: dict = {"value": value}
    if system is None and any(ch.isdigit() for ch in value):
        system = "phone"
    if system:
        out["system"] = system
    out["use"] = codes.TELECOM_USE.get(c.c(2).upper(), default_use)
    if c.c(2).upper() == "PRS" or equipment == "CP":
        out["use"] = "mobile"
    return out


def coding(code: str, display: str, system_name: str, version: str = "") -> dict | None:
    if not code and not display:
        return None
    out: dict = {}
    system = codes.coding_system(system_name)
    if system:
        out["system"] = system
    if version:
        out["version"] = version
    if code:
        out["code"] = " ".join(code.split())  # a FHIR code has no runs of blanks
    if display:
        out["display"] = display
    return out


def cwe(c: Composite | None) -> dict | None:
    """CWE[CodeableConcept]: CWE.1-3 (and CWE.7 version) → coding[1], CWE.4-6 (CWE.8) →
    coding[2], CWE.10-12 → coding[3], CWE.9 → text (CE, CNE and CF read the same way)."""
    if c is None:
        return None
    codings = [
        coding(c.c(1), c.c(2), c.c(3), c.c(7)),
        coding(c.c(4), c.c(5), c.c(6), c.c(8)),
        coding(c.c(10), c.c(11), c.c(12)),
    ]
    out: dict = {}
    found = [x for x in codings if x is not None and "code" in x]
    if found:
        out["coding"] = found
    text = c.c(9) or next((x["display"] for x in codings if x and "code" not in x), "")
    if text:
        out["text"] = text
    return out or None


def table_concept(c: Composite | None, table: str) -> dict | None:
    """An IS/ID/CWE value of an HL7 table: the table's CodeSystem when CWE.3 names none."""
    if c is None or not c.c(1):
        return None
    concept = cwe(c) or {}
    first = concept.get("coding", [{}])[0]
    if "system" not in first:
        first["system"] = codes.V2 + table
    return concept


def xcn_reference(c: Composite, default_system: str | None) -> dict | None:
    """XCN as a logical Reference(Practitioner): XCN.1 (with XCN.9 authority) → identifier,
    XCN.2-6 → display. Hearth does not create Practitioner resources from messages."""
    ident = c.c(1)
    names = [c.c(6), c.c(3), c.c(4), c.c(2, 1), c.c(5)]
    display = " ".join(n for n in names if n)
    if not ident and not display:
        return None
    out: dict = {"type": "Practitioner"}
    if ident:
        identifier: dict = {"value": ident}
        system = hd_system(c.c(9, 1), c.c(9, 2), c.c(9, 3)) or default_system
        if system:
            identifier["system"] = system
        out["identifier"] = identifier
    if display:
        out["display"] = display
    return out


def unit(c: Composite | None) -> dict:
    """CWE[Quantity] (OBX-6): CWE.1 → code (and unit unless CWE.2 names it), CWE.3 → system;
    UCUM when the message says so, or when the unit is a common UCUM code and no system is
    given."""
    if c is None or not c.c(1):
        return {}
    code, text, system_name = c.c(1), c.c(2), c.c(3)
    out = {"unit": text or code}
    system = codes.coding_system(system_name) if system_name else None
    if system is None and code in codes.UCUM_UNITS:
        system = codes.UCUM
    if system is not None:
        out["system"] = system
        out["code"] = code
    return out
