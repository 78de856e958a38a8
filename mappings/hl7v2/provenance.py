"""The record of the message itself, added to every inbound message's Bundle: its MessageHeader,
the Organizations and Devices its header names, and the Provenance of what it wrote — after the
V2-to-FHIR IG segment maps MSH[MessageHeader], MSH[Provenance-Source] and SFT[Device].

- MSH-3 (sending application) → Device (and ``MessageHeader.source``: name, endpoint from MSH-24
  or the HD's URI); MSH-4 / MSH-6 (sending / receiving facility) → Organization
  (``sender`` / ``destination.receiver``); MSH-5 → ``destination``; MSH-9 → ``eventCoding``
  (table 0003); MSH-11 → ``meta.tag`` (table 0103); MSH-19 → ``language``; MSH-22 →
  ``responsible``; SFT → Device (manufacturer, version, product name, binary id, information)
  and ``source.software`` / ``version``.
- Provenance: ``target`` every resource the message creates or updates, ``recorded`` /
  ``occurredDateTime`` MSH-7, ``activity`` MSH-9, ``agent`` the sending facility (author),
  ``entity`` the sending application's Device and the MessageHeader (source).

An HD-named Organization or Device gets the identifier ``urn:ietf:rfc:3986`` | the HD's URI
(``urn:oid:…`` for an ISO OID, Hearth's local namespace otherwise) and is created once (a
conditional create); the MessageHeader and the Provenance have ids derived from the sender and
MSH-10, so a message sent again updates them instead of adding more. A message that writes more
than one Patient (a merge, a link) gets no Provenance: one Provenance naming two patients would
sit in both patients' compartments. Pure functions: no I/O.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Composite, Message
from mappings.hl7v2.mapping import MapContext, entry, search_token

EVENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0003"
PROCESSING_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0103"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
URI = "urn:ietf:rfc:3986"
# what the record may write, whatever the message type (``registry.writes``)
RECORD_TYPES = frozenset({"MessageHeader", "Provenance", "Device", "Organization"})
RECORD_NAMESPACE = uuid.UUID("6f0d7c8e-3f51-4a57-9a43-1d2f0c9b7e21")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def _patched(entries: list[dict]) -> list[str]:
    """The conditional URLs of the records a message patches (a moved Account or Encounter,
    ``moves.py``), as references; not a merged-away Patient (a Provenance in two patients'
    compartments)."""
    return [
        e["request"]["url"]
        for e in entries
        if e.get("request", {}).get("method") == "PATCH"
        and "?" in e["request"]["url"]
        and not e["request"]["url"].startswith("Patient?")
    ]


def add_record(message: Message, ctx: MapContext, bundle: dict) -> None:
    """Append the MessageHeader, the header's Organizations and Devices and the Provenance of
    ``bundle``'s writes to ``bundle`` (reusing an entry the mapping already made for the same
    Organization)."""
    entries: list[dict] = bundle["entry"]
    written = [
        e
        for e in entries
        if e.get("fullUrl")
        and e.get("request", {}).get("method") in ("PUT", "POST")
        and e["resource"].get("resourceType") not in (None, "Parameters")
    ]
    known = _conditional_keys(entries)
    msh = message.msh
    code, event, structure = message.message_type
    record_key = f"{msh.value(3)}|{msh.value(4)}|{message.control_id}"

    def conditional(res_type: str, resource: dict, ident: dict) -> str:
        key = f"{res_type}?identifier=" + search_token(ident.get("system"), ident["value"])
        if key in known:
            return known[key]
        url = ctx.full_url()
        known[key] = url
        entries.append(entry(url, resource, "POST", res_type, if_none_exist=key.split("?", 1)[1]))
        return url

    def organization(hd: Composite | None, country: str = "") -> dict | None:
        ident = _hd_identifier(hd)
        if ident is None or hd is None:
            return None
        resource: dict = {"resourceType": "Organization", "identifier": [ident]}
        if hd.c(1):
            resource["name"] = hd.c(1)
        if country:
            resource["address"] = [{"country": country}]
        return {"reference": conditional("Organization", resource, ident)}

    # the sending application: a Device
    app = msh.first(3)
    app_ident = _hd_identifier(app)
    app_ref = None
    if app is not None and app_ident is not None:
        device: dict = {"resourceType": "Device", "identifier": [app_ident]}
        if app.c(1):
            device["deviceName"] = [{"name": app.c(1), "type": "user-friendly-name"}]
        app_ref = {"reference": conditional("Device", device, app_ident)}

    sender = organization(msh.first(4), msh.value(17))
    source: dict = {"endpoint": _endpoint(msh.first(24), app)}
    if app is not None and app.c(1):
        source["name"] = app.c(1)
    for sft in message.all("SFT"):
        software = _software(sft, conditional)
        if software and "software" not in source:
            source.update(software)
    header: dict = {
        "resourceType": "MessageHeader",
        "id": str(uuid.uuid5(RECORD_NAMESPACE, record_key + "|header")),
        "eventCoding": {
            "system": EVENT_SYSTEM,
            "code": event,
            "display": "^".join(p for p in (code, event, structure) if p),
        },
        "source": source,
    }
    destination: dict = {}
    receiving_app = msh.first(5)
    if receiving_app is not None and (receiving_app.c(1) or receiving_app.c(2)):
        destination["name"] = receiving_app.c(1) or receiving_app.c(2)
    receiver = organization(msh.first(6))
    if receiver:
        destination["receiver"] = receiver
    if destination:
        destination["endpoint"] = _endpoint(msh.first(25), receiving_app)
        header["destination"] = [destination]
    if sender:
        header["sender"] = sender
    responsible = _responsible(msh.first(22), conditional)
    if responsible:
        header["responsible"] = responsible
    processing = msh.value(11)
    if processing:
        header["meta"] = {"tag": [{"system": PROCESSING_SYSTEM, "code": processing}]}
    language = msh.value(19)
    if language and _LANGUAGE.match(language):
        header["language"] = language
    if written:
        header["focus"] = [{"reference": e["fullUrl"]} for e in written]
    header_url = f"urn:uuid:{header['id']}"
    entries.append(
        {
            "fullUrl": header_url,
            "resource": header,
            "request": {"method": "PUT", "url": f"MessageHeader/{header['id']}"},
        }
    )

    patients = {e["fullUrl"] for e in written if e["resource"].get("resourceType") == "Patient"}
    if not written or len(patients) > 1:
        return
    provenance: dict = {
        "resourceType": "Provenance",
        "id": str(uuid.uuid5(RECORD_NAMESPACE, record_key + "|provenance")),
        "target": [{"reference": e["fullUrl"]} for e in written]
        + [{"reference": url} for url in _patched(entries)],
        "activity": {"coding": [dict(header["eventCoding"])]},
        "entity": [{"role": "source", "what": {"reference": header_url}}],
    }
    try:
        occurred = dt.date_time(msh.value(7), ctx.tz, "MSH-7")
    except Exception:  # the mapping already answered a bad MSH-7; no Provenance without it
        occurred = None
    author = sender or app_ref
    if occurred is None or author is None:
        return  # Provenance.recorded and agent.who are required: the header gives neither
    provenance["occurredDateTime"] = occurred
    # recorded (an instant): MSH-7 when it has a time and zone, else its day at 00:00 UTC
    provenance["recorded"] = occurred if "T" in occurred else _day(occurred) + "T00:00:00Z"
    provenance["agent"] = [
        {"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]}, "who": author}
    ]
    if app_ref is not None:
        provenance["entity"].append({"role": "source", "what": app_ref})
    entries.append(
        {
            "fullUrl": f"urn:uuid:{provenance['id']}",
            "resource": provenance,
            "request": {"method": "PUT", "url": f"Provenance/{provenance['id']}"},
        }
    )


def _day(date: str) -> str:
    """A FHIR date of any precision (YYYY, YYYY-MM, YYYY-MM-DD) as a full date."""
    parts = date.split("-")
    return "-".join(parts + ["01"] * (3 - len(parts)))


def _conditional_keys(entries: list[dict]) -> dict[str, str]:
    """``Type?identifier=…`` → fullUrl of the entries already in the Bundle (conditional
    creates and updates), so the header's Organizations reuse them."""
    out: dict[str, str] = {}
    for e in entries:
        req = e.get("request", {})
        url = e.get("fullUrl")
        if not url:
            continue
        if req.get("method") == "POST" and req.get("ifNoneExist"):
            out[f"{req.get('url')}?{req['ifNoneExist']}"] = url
        elif req.get("method") == "PUT" and "?" in str(req.get("url", "")):
            out[str(req["url"])] = url
    return out


def _responsible(xon: Composite | None, conditional) -> dict | None:  # type: ignore[no-untyped-def]
    """MSH-22 (XON, v2.7+): an Organization when it carries an id (XON.10, else XON.3, with
    XON.6 its authority), a display when it has a name only."""
    if xon is None:
        return None
    name, value = xon.c(1), xon.c(10) or xon.c(3)
    if not value:
        return {"display": name} if name else None
    ident: dict = {"value": value}
    system = dt.hd_system(xon.c(6, 1), xon.c(6, 2), xon.c(6, 3))
    if system:
        ident["system"] = system
    resource: dict = {"resourceType": "Organization", "identifier": [ident]}
    if name:
        resource["name"] = name
    return {"reference": conditional("Organization", resource, ident)}


def _endpoint(network: Composite | None, application: Composite | None) -> str:
    """``source`` / ``destination.endpoint`` (url, required): the network address (MSH-24 /
    MSH-25, an HD) when sent, else the application's HD (MSH-3 / MSH-5) as a URI."""
    for hd in (network, application):
        ident = _hd_identifier(hd)
        if ident is not None:
            return str(ident["value"])
    return "urn:hearth:hl7v2:unknown"


def _hd_identifier(hd: Composite | None) -> dict | None:
    """HD → Identifier: ``urn:ietf:rfc:3986`` | the URI the HD names (``dt.hd_system``)."""
    if hd is None:
        return None
    uri = dt.hd_system(hd.c(1), hd.c(2), hd.c(3))
    return {"system": URI, "value": uri} if uri else None


def _software(sft, conditional) -> dict:  # type: ignore[no-untyped-def]
    """SFT → Device (SFT[Device]); ``source.software`` / ``version`` of the MessageHeader."""
    vendor = sft.value(1)
    version, product = sft.value(2), sft.value(3)
    if not (vendor or product):
        return {}
    key = "/".join(quote(p, safe="") for p in (vendor, product, version))
    ident = {"system": "urn:hearth:hl7v2:software", "value": key}
    device: dict = {"resourceType": "Device", "identifier": [ident]}
    if vendor:
        device["manufacturer"] = vendor
    if product:
        device["deviceName"] = [{"name": product, "type": "manufacturer-name"}]
    if version:
        device["version"] = [{"value": version}]
    if sft.value(4):
        device["modelNumber"] = sft.value(4)
    if sft.value(5):
        device["note"] = [{"text": sft.value(5)}]
    conditional("Device", device, ident)
    out = {}
    if product:
        out["software"] = product
    if version:
        out["version"] = version
    return out
