"""ADT^A40 (merge patient – patient identifier list): PID names the surviving patient, MRG-1
the prior patient's identifiers. The V2-to-FHIR IG has no A40 message map (its only MRG map is
MRG[Account]), so Hearth follows FHIR R4 patient.html "Linking patients": the survivor is
upserted like an A08 and gets ``link`` type ``replaces`` to the prior record; the prior record is
patched (a conditional FHIRPath Patch on its MRG-1 identifier) to ``active: false`` with a
``link`` type ``replaced-by`` the survivor. Both happen in one transaction: when MRG-1 matches no
stored patient (or several) the transaction fails and the message is answered AE, nothing
written. Records pointing at the prior patient are left as they are (clients follow the link).
Pure functions: no I/O.
"""

from __future__ import annotations

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.adt import patient_entry
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.errors import missing
from mappings.hl7v2.mapping import MapContext, search_token


def prior_key(message: Message, ctx: MapContext) -> str:
    mrg = message.one("MRG")
    if mrg is None:
        raise missing("MRG^1^1", "prior patient identifier list: the MRG segment")
    for rep in mrg.reps(1):
        ident = dt.cx(rep, ctx.default_system, mrg.where(1))
        if ident is not None and "system" in ident:
            return "identifier=" + search_token(ident["system"], ident["value"])
    raise missing(mrg.where(1), "prior patient identifier list")


def _part(name: str, **value: object) -> dict:
    return {"name": name, **value}


def bundle(message: Message, ctx: MapContext) -> dict:
    prior = prior_key(message, ctx)
    survivor_url, survivor = patient_entry(message, ctx, update=True)
    if survivor["request"]["url"] == f"Patient?{prior}":
        raise missing("MRG^1^1", "a prior identifier different from the surviving PID-3")
    survivor["resource"]["link"] = [
        {"other": {"reference": f"Patient?{prior}"}, "type": "replaces"}
    ]
    operations = [
        [_part("type", valueCode="delete"), _part("path", valueString="Patient.active")],
        [
            _part("type", valueCode="add"),
            _part("path", valueString="Patient"),
            _part("name", valueString="active"),
            _part("value", valueBoolean=False),
        ],
        [
            _part("type", valueCode="add"),
            _part("path", valueString="Patient"),
            _part("name", valueString="link"),
            _part(
                "value",
                part=[
                    _part("other", valueReference={"reference": survivor_url}),
                    _part("type", valueCode="replaced-by"),
                ],
            ),
        ],
    ]
    patch = {
        "resourceType": "Parameters",
        "parameter": [{"name": "operation", "part": ops} for ops in operations],
    }
    prior_entry = {"resource": patch, "request": {"method": "PATCH", "url": f"Patient?{prior}"}}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [survivor, prior_entry]}
