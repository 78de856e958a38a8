"""ADT patient merges and identifier changes (MRG): A34/A35/A36/A39/A40 merge the MRG-1 patient
into the PID patient (``mappings/hl7v2/mrg.py``: the survivor ``replaces`` the prior record,
which is patched inactive and ``replaced-by``; AE, nothing written, when MRG-1 matches no
patient). A47 (change patient identifier list) updates the patient found by MRG-1 (or, sent
again, by its new PID-3) with the PID record, so it keeps its id and history and takes its new
identifiers; A46 (change patient ID, MRG-4) and A48 (change alternate patient ID, MRG-2), the
events A47 replaced, the same way with their own MRG field (else MRG-1). Account and visit
merges, moves and changes (A41-A45, A49-A51) are ``adt_move.py``."""

from __future__ import annotations

from mappings.hl7v2 import adt, mrg
from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.errors import missing
from mappings.hl7v2.mapping import MapContext, search_token
from mappings.hl7v2.segments import around
from mappings.hl7v2.spec import MessageType

PATIENT_MERGES = frozenset({"A34", "A35", "A36", "A39", "A40"})
# identifier changes: the MRG fields naming the identifier being changed, in order of preference
CHANGES = {"A46": (4, 1), "A47": (1,), "A48": (2, 1)}


def bundle(message: Message, ctx: MapContext) -> dict:
    event = message.message_type[1]
    if event in PATIENT_MERGES:
        return mrg.bundle(message, ctx)
    mrg_seg = message.one("MRG")
    prior = None
    for n in CHANGES[event] if mrg_seg is not None else ():
        for rep in mrg_seg.reps(n):  # type: ignore[union-attr]
            ident = dt.cx(rep, ctx.default_system, f"MRG^1^{n}")
            if ident is not None and "system" in ident:
                prior = search_token(ident["system"], ident["value"])
                break
        if prior is not None:
            break
    if prior is None:
        raise missing(f"MRG^1^{CHANGES[event][0]}", "the prior patient identifier")
    core = adt.bundle(message, ctx)
    # the patient known by the prior identifier or, once changed, by the new one (so the
    # same message sent again finds it again): either, never both (two records: AE)
    new = core["entry"][0]["request"]["url"].removeprefix("Patient?identifier=")
    core["entry"][0]["request"]["url"] = f"Patient?identifier={prior},{new}"
    return around(core, message, ctx, frozenset({"PV1", "MRG"}))


MESSAGE = MessageType(
    code="ADT",
    events=PATIENT_MERGES | frozenset(CHANGES),
    structure="ADT_A39",
    writes=frozenset(
        {
            "Patient",
            "Encounter",
            "EpisodeOfCare",
            "Account",
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
    description="patient merges (replaces / replaced-by links), patient identifier changes",
)
