"""ADT account and visit merges, moves and identifier changes (A41-A45, A49-A51;
``mappings/hl7v2/moves.py``): the PID patient upserted as in any ADT, the surviving account
(PID-18) and visit (PV1) where the event keeps them, the other segments walked, then the merge
(Linkage, the prior Account inactive), move (the Account / Encounter re-pointed to the PID
patient) or identifier change (the old identifier kept as ``old``) as conditional patches; AE
204 when the record acted on is not known."""

from __future__ import annotations

from mappings.hl7v2 import adt, moves
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import Builder
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    visit, account = moves.skips(message)
    if visit:
        core = adt.bundle(message, ctx)
    else:
        core = {"entry": [adt.patient_entry(message, ctx, update=True)[1]]}
    builder = Builder(message, ctx)
    builder.accounts = account
    builder.use_core(core)
    builder.walk(frozenset({"PV1", "MRG"}))
    assert builder.patient_url is not None  # patient_entry raised AE without a PID
    urls = {}
    for e in builder.entries:
        kind = e["resource"].get("resourceType")
        if kind in ("Account", "Encounter") and kind not in urls:
            urls[kind] = e["fullUrl"]
    out = builder.finish()
    out["entry"] += moves.entries(message, ctx, builder.patient_url, urls)
    return out


MESSAGE = MessageType(
    code="ADT",
    events=moves.EVENTS,
    structure="ADT_A39",
    writes=frozenset(
        {
            "Patient",
            "Encounter",
            "EpisodeOfCare",
            "Account",
            "Linkage",
            "Practitioner",
            "Organization",
            "Location",
            "RelatedPerson",
            "AllergyIntolerance",
            "Condition",
            "Procedure",
            "Coverage",
            "Observation",
        }
    ),
    map=bundle,
    description="account / visit merges (Linkage), moves (re-pointed), identifier changes",
)
