"""ADT^A01 (admit), ADT^A04 (register), ADT^A08 (update patient information) and ADT^A03
(discharge) → a transaction Bundle, after the V2-to-FHIR IG message maps "ADT_A01" (used by the
IG for A01, A04, A08 and A13) and its Event[EncounterStatus] concept map for A03.

The Patient (PID, see ``pid.py``) is a conditional update ``PUT Patient?identifier=system|value``
on its first PID-3 identifier: created the first time, replaced by each later message (ADT
messages carry the whole demographic record). The Encounter (PV1, see ``pv1.py``) is a
conditional update on its visit number PV1-19 when there is one (A03 then finishes the same
Encounter that A01 began), else a conditional update on an identifier of the message's PV1
(sending application, MSH-10: the same message sent again changes nothing); A08 without a
visit number leaves encounters alone.
The other segments (NK1, OBX, AL1, DG1, PR1, IN1, …) are mapped by ``segments.py`` around this
core (``messages/adt.py``). Pure functions: no I/O.
"""

from __future__ import annotations

from mappings.hl7v2 import pid as pid_map
from mappings.hl7v2 import pv1 as pv1_map
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.errors import Hl7Error
from mappings.hl7v2.mapping import MapContext, entry, search_token

EVENTS = frozenset({"A01", "A03", "A04", "A08"})


def patient_entry(message: Message, ctx: MapContext, *, update: bool) -> tuple[str, dict]:
    """(fullUrl, entry) of the message's PID: a conditional update, or with ``update`` False a
    conditional create (``ifNoneExist``) that leaves a known patient as it is."""
    pid = message.one("PID")
    if pid is None:
        raise Hl7Error("AE", "100", "the message has no PID segment", location="PID")
    key = pid_map.match_key(pid, ctx)
    resource = pid_map.patient(pid, ctx)
    url = ctx.full_url()
    if update:
        return url, entry(url, resource, "PUT", f"Patient?{key}")
    return url, entry(url, resource, "POST", "Patient", if_none_exist=key)


def bundle(message: Message, ctx: MapContext) -> dict:
    event = message.message_type[1]
    patient_url, patient = patient_entry(message, ctx, update=True)
    entries = [patient]
    pv1 = message.one("PV1")
    if event == pv1_map.CANCEL_TRANSFER and pv1 is not None and not pv1.value(3):
        # the location to restore is the message's to say (HL7 v2.5.1 3.3.12): not guessed
        raise Hl7Error(
            "AE",
            "101",
            "A12 (cancel transfer) needs PV1-3: the patient's location before the transfer",
            location="PV1^1^3",
        )
    if pv1 is not None and pv1_map.has_visit(pv1):
        key = pv1_map.match_key(pv1, ctx)
        if key is not None or event != "A08":
            resource = pv1_map.encounter(pv1, event, patient_url, ctx)
            url = ctx.full_url()
            if key is None:  # no visit number: an identifier of this message's PV1
                ident = ctx.message_identifier("PV1", pv1.occurrence)
                resource.setdefault("identifier", []).append(ident)
                key = "identifier=" + search_token(ident["system"], ident["value"])
            entries.append(entry(url, resource, "PUT", f"Encounter?{key}"))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
