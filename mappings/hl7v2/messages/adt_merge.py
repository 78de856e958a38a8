"""ADT merges and identifier changes (MRG): A34/A35/A36/A39/A40 merge the MRG-1 patient into the
PID patient (``mappings/hl7v2/mrg.py``: the survivor ``replaces`` the prior record, which is
patched inactive and ``replaced-by``; AE, nothing written, when MRG-1 matches no patient). A47
(change patient identifier list) updates the patient found by MRG-1 (or, sent again, by its new
PID-3) with the PID record, so it keeps its id and history and takes its new identifiers. A41/A42/A44/A49/A50/A51 (account and
visit moves) update the PID patient and the PV1 visit; the MRG account/visit is reported as a
warning (ERR W), not applied: Hearth keeps no account-to-visit graph to move."""

from __future__ import annotations

from mappings.hl7v2 import adt, mrg
from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.errors import missing
from mappings.hl7v2.mapping import MapContext, search_token
from mappings.hl7v2.segments import around
from mappings.hl7v2.spec import MessageType

PATIENT_MERGES = frozenset({"A34", "A35", "A36", "A39", "A40"})
MOVES = frozenset({"A41", "A42", "A44", "A49", "A50", "A51"})


def bundle(message: Message, ctx: MapContext) -> dict:
    event = message.message_type[1]
    if event in PATIENT_MERGES:
        return mrg.bundle(message, ctx)
    if event == "A47":
        mrg_seg = message.one("MRG")
        prior = None
        for rep in mrg_seg.reps(1) if mrg_seg is not None else []:
            ident = dt.cx(rep, ctx.default_system, "MRG^1^1")
            if ident is not None and "system" in ident:
                prior = search_token(ident["system"], ident["value"])
                break
        if prior is None:
            raise missing("MRG^1^1", "prior patient identifier list")
        core = adt.bundle(message, ctx)
        # the patient known by the prior identifier or, once changed, by the new one (so the
        # same message sent again finds it again): either, never both (two records: AE)
        new = core["entry"][0]["request"]["url"].removeprefix("Patient?identifier=")
        core["entry"][0]["request"]["url"] = f"Patient?identifier={prior},{new}"
        return around(core, message, ctx, frozenset({"PV1", "MRG"}))
    ctx.warn("207", f"ADT^{event}: the MRG account/visit move is not applied", "MRG^1")
    return around(adt.bundle(message, ctx), message, ctx, frozenset({"PV1"}))


MESSAGE = MessageType(
    code="ADT",
    events=PATIENT_MERGES | MOVES | {"A47"},
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
    description="merges (replaces / replaced-by links), identifier changes, account moves",
)
