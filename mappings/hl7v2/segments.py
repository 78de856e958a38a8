"""The segments a message carries beside its core (PID, PV1, OBR/OBX), each mapped after its
V2-to-FHIR IG segment map, by a ``Builder`` that walks the message in order and keeps each
segment's context (the patient, the visit, the current order):

NK1[RelatedPerson], AL1[AllergyIntolerance], DG1[Condition], PRB[Condition],
PR1[Procedure], IN1[Coverage] (IN1-3/4 → the payor Organization), PID-18 → Account,
ORC/OBR[ServiceRequest] (orders), SPM[Specimen], RXA[Immunization] (RXR → route and site),
RXO/RXE[MedicationRequest], RXD[MedicationDispense], TXA[DocumentReference] (the OBX content as
its attachment), SCH with TQ1/AIS/AIG/AIL/AIP[Appointment], FT1[ChargeItem],
RF1[ServiceRequest] (a referral), PRD[Practitioner], OBX without an OBR → Observation, and
Z-segments kept whole as an extension on the resource they follow.

Every entry is a conditional write on an identifier, so a message sent twice changes nothing:
the segment's own identifier where v2 has one (DG1-20, PR1-19, IN1-36, SPM-2, ORC-2/3, TXA-12,
SCH-1/2, FT1-2, RF1-6, PRB-4), else one Hearth derives from the patient and the segment's code
(AL1, DG1, NK1: an ADT repeats the patient's whole list each time), else from the message
(sending application, MSH-10, segment and its position). Pure functions: no I/O.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

from mappings.hl7v2 import codes
from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2 import obr as obr_map
from mappings.hl7v2 import obx as obx_map
from mappings.hl7v2 import pv1 as pv1_map
from mappings.hl7v2.er7 import Composite, Message, Segment
from mappings.hl7v2.errors import Hl7Error
from mappings.hl7v2.mapping import MapContext, entry, search_token
from mappings.hl7v2.parties import Parties

DERIVED = "urn:hearth:hl7v2:"
SOURCE = "urn:hearth:hl7v2:sender:"
SEGMENT_EXTENSION = "http://hearth.local/fhir/StructureDefinition/hl7v2-segment"
CLINICAL = "http://terminology.hl7.org/CodeSystem/"

# table 0127 allergen type → AllergyIntolerance.category
ALLERGY_CATEGORY = {
    "DA": "medication",
    "MA": "medication",
    "FA": "food",
    "EA": "environment",
    "AA": "environment",
    "PA": "environment",
    "LA": "environment",
    "PL": "environment",
}
# table 0128 allergy severity → AllergyIntolerance.criticality
CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}
# table 0038 order status (ORC-5) → ServiceRequest / MedicationRequest status
ORDER_STATUS = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}
# table 0119 order control (ORC-1), when ORC-5 is empty
ORDER_CONTROL = {
    "NW": "active",
    "OK": "active",
    "SC": "active",
    "XO": "active",
    "CA": "revoked",
    "OC": "revoked",
    "CR": "revoked",
    "DC": "revoked",
    "OD": "revoked",
    "HD": "on-hold",
    "OH": "on-hold",
    "RL": "active",
    "OR": "active",
    "RE": "completed",
}
MED_STATUS = {
    "active": "active",
    "revoked": "cancelled",
    "completed": "completed",
    "on-hold": "on-hold",
    "entered-in-error": "entered-in-error",
}
# table 0322 completion status (RXA-20) → Immunization.status
IMMUNIZATION_STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done"}
# table 0271 document completion status (TXA-17) → DocumentReference.docStatus
DOC_STATUS = {
    "DO": "final",
    "AU": "final",
    "LA": "final",
    "PA": "preliminary",
    "IP": "preliminary",
    "IN": "preliminary",
    "DI": "preliminary",
    "CA": "entered-in-error",
}
# table 0278 filler status (SCH-25, AIx) → Appointment.status
APPOINTMENT_STATUS = {
    "BOOKED": "booked",
    "OVERBOOK": "booked",
    "CANCELLED": "cancelled",
    "DC": "cancelled",
    "COMPLETE": "fulfilled",
    "NOSHOW": "noshow",
    "PENDING": "pending",
    "WAITLIST": "waitlist",
    "STARTED": "arrived",
    "DELETED": "entered-in-error",
    "BLOCKED": "booked",
}
# SIU trigger events → Appointment.status when SCH-25 is empty
SIU_STATUS = {
    "S12": "booked",
    "S13": "booked",
    "S14": "booked",
    "S15": "cancelled",
    "S16": "cancelled",
    "S17": "entered-in-error",
    "S26": "noshow",
    "S22": "cancelled",
}
# table 0280 referral priority (RF1-2) → ServiceRequest.priority
REFERRAL_PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}
# table 0283 referral status (RF1-1) → ServiceRequest.status
REFERRAL_STATUS = {"A": "active", "P": "draft", "R": "revoked", "E": "completed"}
# table 0063 relationship codes → the v3 RoleCode where they differ in spelling only
RELATED_SYSTEM = CLINICAL + "v2-0063"


def message_source(message: Message) -> str:
    """``meta.source`` of what a message wrote: the sending application (MSH-3), so the
    outbound sender does not echo a hospital's own results back to it."""
    sender = message.msh.value(3) or message.msh.value(4) or "-"
    return SOURCE + quote(sender, safe="")


# The role of an OBX-16 responsible observer (IG OBX[Observation] map, OBX-16)
OBSERVER_ROLE = {
    "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
    "code": "responsibleObserver",
}
PROVIDER_ROLE = CLINICAL + "v2-0443"  # table 0443 provider role
PERFORMER_FUNCTION = "http://hl7.org/fhir/StructureDefinition/event-performerFunction"
PARTICIPATION = CLINICAL + "v3-ParticipationType"
# OBR NDL fields → (DiagnosticReport element, table 0443 role, its display, the IG's
# event-performerFunction code on the performer reference): IG OBR[DiagnosticReport]
REPORT_ROLES = (
    (32, "resultsInterpreter", "PI", "Primary Interpreter", None),
    (34, "performer", "TN", "Technician", "SPRF"),
    (35, "performer", "TR", "Transcriptionist", "TRANS"),
)


def derived(kind: str, *parts: str) -> dict:
    """An identifier Hearth derives where v2 gives none (documented in docs/hl7v2.md)."""
    value = "/".join(parts)
    value = "".join(ch if ch.isprintable() else " " for ch in value)  # \Xhh\ may decode to any
    return {"system": DERIVED + kind, "value": value}


class Builder:
    """Collects a message's entries: core entries first (as the caller adds them), then the
    segments ``walk`` maps, then the parties they name."""

    def __init__(self, message: Message, ctx: MapContext) -> None:
        self.message = message
        self.ctx = ctx
        self.parties = Parties(ctx)
        self.entries: list[dict] = []
        self.patient_url: str | None = None
        self.patient_key = ""  # "system|value" of the patient, for derived identifiers
        self.encounter_url: str | None = None
        self._keys: dict[str, str] = {}
        self.last: dict | None = None  # the last resource mapped (for Z-segments)
        self._diagnoses: list[tuple[str, Segment]] = []  # (Condition fullUrl, its DG1)
        self.accounts = True  # PID-18 → Account (not where the message patches that account)
        self.account_status = "active"  # of the PID-18 Account (BAR^P02 purges it: inactive)
        self.groups = False  # each PID a patient group, each PV1 a visit group (BAR)
        self._pv1: Segment | None = None  # the PV1 of the current visit

    # --- entries -------------------------------------------------------------------------
    def add(self, entry_: dict) -> str:
        self.entries.append(entry_)
        self.last = entry_["resource"]
        return str(entry_["fullUrl"])

    def put(self, resource: dict, ident: dict) -> str:
        """A conditional update on ``ident`` (added to the resource); the same key twice in one
        message is one entry, the later segment's content winning."""
        res_type = resource["resourceType"]
        idents = resource.setdefault("identifier", [])
        if ident not in idents:
            idents.insert(0, ident)
        query = "identifier=" + search_token(ident.get("system"), ident["value"])
        key = f"{res_type}?{query}"
        if key in self._keys:
            url = self._keys[key]
            for e in self.entries:
                if e["fullUrl"] == url:
                    e["resource"] = resource
            self.last = resource
            return url
        url = self.ctx.full_url()
        self._keys[key] = url
        return self.add(entry(url, resource, "PUT", key))

    def ei(self, c: Composite | None) -> dict | None:
        return dt.ei(c, self.ctx.default_system) if c is not None else None

    def _forget(self) -> None:
        """Drop the keys of entries taken back (a segment that failed half-way)."""
        kept = {e["fullUrl"] for e in self.entries}
        self._keys = {k: u for k, u in self._keys.items() if u in kept}
        kept_parties = {e["fullUrl"] for e in self.parties.entries}
        self.parties.forget(kept_parties)

    def segment_identifier(self, seg: Segment) -> dict:
        return self.ctx.message_identifier(seg.name, seg.occurrence)

    def patient_identifier(self, kind: str, *parts: str) -> dict:
        return derived(kind, self.patient_key or "-", *parts)

    def subject(self) -> dict | None:
        return {"reference": self.patient_url} if self.patient_url else None

    def bundle(self) -> dict:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [*self.entries, *self.parties.entries],
        }

    def use_core(self, bundle: dict) -> None:
        """Take the entries of a core mapping (adt/oru/mrg): its Patient and Encounter become
        the context, its logical practitioner and location references become resources."""
        for e in bundle["entry"]:
            res = e["resource"]
            self.entries.append(e)
            url = e["request"].get("url", "")
            if e["request"]["method"] == "PUT" and url in self._keys and res.get("identifier"):
                # two segments with the same own identifier (e.g. OBX-21 repeated): the later
                # one is told apart by its position, as oru.py does for derived identifiers
                n = 2
                while f"{url}%2F{n}" in self._keys:
                    n += 1
                res["identifier"][0]["value"] += f"/{n}"
                url = e["request"]["url"] = f"{url}%2F{n}"
            if "fullUrl" in e and url:
                self._keys[url] = e["fullUrl"]
            kind = res.get("resourceType")
            if kind == "Patient" and self.patient_url is None:
                self.patient_url = e.get("fullUrl")
                self.patient_key = _key_of(e)
            elif kind == "Encounter" and self.encounter_url is None:
                self.encounter_url = e.get("fullUrl")
            self._materialise(res)
        self.last = self.entries[0]["resource"] if self.entries else None

    def _materialise(self, res: dict) -> None:
        for p in res.get("participant", []) if res.get("resourceType") == "Encounter" else []:
            if isinstance(p.get("individual"), dict):
                p["individual"] = self.parties.practitioner_from_logical(p["individual"])
        for i, perf in enumerate(res.get("performer", [])):
            if isinstance(perf, dict) and perf.get("type") == "Practitioner":
                who = self.parties.practitioner_from_logical(perf)
                if res.get("resourceType") == "Observation" and "reference" in who:
                    who = self._observer_role(who, perf["identifier"])
                res["performer"][i] = who
        if res.get("resourceType") == "DiagnosticReport" and obr_map.SEGMENT_KEY in res:
            self._report_roles(res, self.message.segments[res.pop(obr_map.SEGMENT_KEY)])
        if res.get("resourceType") == "Encounter":
            pv1 = self._pv1 if self.groups else self._pv1 or self.message.one("PV1")
            for loc in res.get("location", []):
                # each PL field its own Location: PV1-3 (assigned), PV1-6 (prior); an A12
                # keeps only PV1-3, a PV1 without PV1-3 only PV1-6 (not by position)
                n = loc.pop(pv1_map.FIELD_KEY, None)
                ref = self.parties.location(pv1.first(n)) if pv1 is not None and n else None
                if ref:
                    loc["location"] = ref

    # --- the walk ------------------------------------------------------------------------
    def walk(self, skip: frozenset[str] = frozenset()) -> None:
        """Map every segment not in ``skip`` that has a map, in message order. With ``groups``
        each PID starts a patient group (its own Patient, the segments after it about that
        patient) and each PV1 a visit group (its own Encounter, the DG1 after it its
        diagnoses): BAR_P01 / BAR_P02's repeating groups."""
        order: dict | None = None  # the current ORC/OBR ServiceRequest or RXE request: (url, res)
        request_url: str | None = None
        last_med: dict | None = None
        appointment: dict | None = None
        document: dict | None = None
        self._doc_text: list[str] = []
        orc: Segment | None = None
        for seg in self.message.segments:
            name = seg.name
            if self.groups and name == "PID" and seg.index != self._first_pid():
                self._next_patient(seg)
            elif self.groups and name == "PV1" and self.encounter_url is not None:
                self._episode_of_care()  # the visit before is complete
                self.encounter_url, self._diagnoses = None, []
            if name in skip:
                if name == "ORC":
                    orc = seg
                continue
            mark = len(self.entries), len(self.parties.entries)
            try:
                state = self._one(seg, orc, order, request_url, last_med, appointment, document)
            except Hl7Error as exc:  # a bad field in a secondary segment: that segment is left out
                del self.entries[mark[0] :]
                del self.parties.entries[mark[1] :]
                self._forget()
                self.ctx.warn(exc.code, f"{seg.name} not stored: {exc.text}", exc.location)
                continue
            orc, order, request_url, last_med, appointment, document = state
        if appointment is not None:
            _appointment_finish(appointment, self.message.message_type[1], self.ctx)
        self._episode_of_care()
        for e in self.entries:
            res = e["resource"]
            if res.get("resourceType") == "DocumentReference" and not res.get("content"):
                title = res.get("type", {}).get("text") or "document"
                res["content"] = [{"attachment": {"title": f"{title} (content not sent)"}}]

    def _one(  # type: ignore[no-untyped-def]
        self, seg: Segment, orc, order, request_url, last_med, appointment, document
    ):
        """Map one segment; the walk's state (current ORC, medication order, request, …)
        after it."""
        name = seg.name
        doc_text = self._doc_text
        if name == "PID" and self.patient_url is not None:
            self._account(seg)
        elif name == "PV1" and self.encounter_url is None and self.patient_url:
            self._encounter(seg)
        elif name == "NK1":
            self._related_person(seg)
        elif name == "ROL":
            self._practitioner_role(seg, ident=1, role=3, person=4, start=5, end=6,
                                    telecom=12, location=13, organization=14)  # fmt: skip
        elif name == "PRT":
            self._practitioner_role(seg, ident=1, role=4, person=5, start=11, end=12,
                                    telecom=15, location=9, organization=8, specialty=6)  # fmt: skip
        elif name == "AL1":
            self._allergy(seg)
        elif name == "IAM":
            self._allergy(seg, iam=True)
        elif name == "PD1" and self.patient_url is not None:
            self._patient_care(seg)
        elif name == "DG1":
            url = self._condition(seg)
            if url is not None:
                self._diagnoses.append((url, seg))
        elif name == "PRB":
            self._problem(seg)
        elif name == "PR1":
            self._procedure(seg)
        elif name == "IN1":
            self._coverage(seg)
        elif name == "ORC":
            orc = seg
            if not _has_detail_after(self.message, seg):
                request_url = self._service_request(orc, None)
        elif name == "OBR":
            request_url = self._service_request(orc, seg)
            order = None
        elif name == "SPM":
            self._specimen(seg, request_url)
        elif name == "RXA":
            last_med = self._immunization(seg, orc)
        elif name == "RXR" and last_med is not None:
            _route(last_med, seg)
        elif name in ("RXO", "RXE"):
            order = self._medication_request(seg, orc)
            last_med = order
        elif name == "RXD":
            self._dispense(seg, orc, order)
        elif name == "TXA":
            document = self._document(seg)
            self._doc_text = doc_text = []
        elif name == "OBX" and document is not None:
            self._document_content(document, seg, doc_text)
        elif name == "OBX":
            self._observation(seg, request_url)
        elif name == "SCH":
            if appointment is not None:  # the message's previous appointment is complete
                _appointment_finish(appointment, self.message.message_type[1], self.ctx)
            appointment = self._appointment(seg)
        elif name in ("TQ1", "AIS", "AIG", "AIL", "AIP") and appointment is not None:
            self._appointment_detail(appointment, seg)
        elif name == "FT1":
            self._charge(seg)
        elif name == "RF1":
            request_url = self._referral(seg)
        elif name == "PRD":
            self._provider(seg)
        elif name.startswith("Z"):
            self._z_segment(seg)
        return orc, order, request_url, last_med, appointment, document

    # --- segment maps --------------------------------------------------------------------
    def _account(self, pid: Segment) -> None:
        """PID-18 → Account; PID-21 (mother's identifier) → RelatedPerson MTH."""
        mother = [dt.cx(r, self.ctx.default_system, pid.where(21)) for r in pid.reps(21)]
        mother_ids = [m for m in mother if m]
        if mother_ids:
            role = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
            res_m: dict = {
                "resourceType": "RelatedPerson",
                "patient": self.subject(),
                "relationship": [
                    {"coding": [{"system": role, "code": "MTH", "display": "mother"}]}
                ],
                "identifier": mother_ids[1:],
            }
            if not res_m["identifier"]:
                del res_m["identifier"]
            self.put(res_m, mother_ids[0])
        first = pid.first(18) if self.accounts else None
        ident = dt.cx(first, self.ctx.default_system, pid.where(18)) if first else None
        if ident is None:
            return
        ident["type"] = dt.identifier_type("AN")
        res = {
            "resourceType": "Account",
            "status": self.account_status,
            "subject": [self.subject()],
        }
        self.put(res, ident)

    def _first_pid(self) -> int:
        first = self.message.one("PID")
        return first.index if first is not None else -1

    def _next_patient(self, pid: Segment) -> None:
        """A patient group after the first: its Patient (as the first one's: a conditional
        update, or create), and no visit yet."""
        from mappings.hl7v2 import pid as pid_map

        if self.encounter_url is not None:
            self._episode_of_care()
        key = pid_map.match_key(pid, self.ctx)
        resource = pid_map.patient(pid, self.ctx)
        first = next(e for e in self.entries if e["resource"].get("resourceType") == "Patient")
        url = self.ctx.full_url()
        if first["request"]["method"] == "PUT":
            self.add(entry(url, resource, "PUT", f"Patient?{key}"))
        else:
            self.add(entry(url, resource, "POST", "Patient", if_none_exist=key))
        self.patient_url = url
        self.patient_key = key.removeprefix("identifier=")
        self.encounter_url, self._diagnoses, self._pv1 = None, [], None

    def _encounter(self, pv1: Segment) -> None:
        if not pv1_map.has_visit(pv1):
            return
        self._pv1 = pv1
        res = pv1_map.encounter(pv1, "", self.patient_url or "", self.ctx)
        self._materialise(res)
        ident = pv1_map.visit_identifier(pv1, self.ctx) or self.segment_identifier(pv1)
        self.encounter_url = self.put(res, ident)

    def _episode_of_care(self) -> None:
        """PV1-54 (service episode identifier) → EpisodeOfCare (IG ``PV1[Encounter]``:
        ``episodeOfCare(EpisodeOfCare.identifier)``), the Encounter's ``episodeOfCare``; the
        message's DG1 diagnoses → its ``diagnosis`` (IG ``DG1[EpisodeOfCare]``: condition,
        role DG1-6, rank DG1-15). Status ``active``: an ADT event ends a visit, not an episode;
        PV1-53 (its description) has no R4 element and is not kept."""
        pv1 = self._pv1 if self.groups else self._pv1 or self.message.one("PV1")
        if pv1 is None or self.patient_url is None:
            return
        first = pv1.first(54)
        ident = dt.cx(first, self.ctx.default_system, pv1.where(54)) if first else None
        if ident is None:
            return
        res: dict = {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": self.subject(),
        }
        diagnoses = []
        for url, dg1 in self._diagnoses:
            diagnosis: dict = {"condition": {"reference": url}}
            role = dt.cwe(dg1.first(6))
            if role is not None:
                diagnosis["role"] = role
            rank = dt.number(dg1.value(15))
            if isinstance(rank, int) and rank > 0:
                diagnosis["rank"] = rank
            diagnoses.append(diagnosis)
        if diagnoses:
            res["diagnosis"] = diagnoses
        url = self.put(res, ident)
        for e in self.entries:
            if e.get("fullUrl") == self.encounter_url:
                e["resource"]["episodeOfCare"] = [{"reference": url}]

    def _practitioner_role(  # type: ignore[no-untyped-def]
        self,
        seg: Segment,
        *,
        ident,
        role,
        person,
        start,
        end,
        telecom,
        location,
        organization,
        specialty=None,
    ) -> None:
        """ROL / PRT → PractitionerRole (IG ROL[Encounter-PractitionerRole], PRT[PractitionerRole]):
        the role (tables 0443 / 0912), the person, period, telecom, location and organization;
        with an Encounter in the message, also one of its participants."""
        who = self.parties.practitioner(seg.first(person))
        if who is None or "reference" not in who:
            return  # a participation without an identified person (a device, a name only)
        res: dict = {"resourceType": "PractitionerRole", "practitioner": who}
        code = dt.cwe(seg.first(role))
        if code:
            res["code"] = [code]
        if specialty is not None:
            kinds = [c for c in (dt.cwe(r) for r in seg.reps(specialty)) if c]
            if kinds:
                res["specialty"] = kinds
        period = _period(seg, start, end, self.ctx)
        if period:
            res["period"] = period
        points = [t for t in (dt.xtn(r, "work") for r in seg.reps(telecom)) if t]
        if points:
            res["telecom"] = points
        place = self.parties.location(seg.first(location))
        if place and "reference" in place:
            res["location"] = [place]
        org = self.parties.organization(seg.first(organization))
        if org and "reference" in org:
            res["organization"] = org
        own = self.ei(seg.first(ident))
        if own is not None and own.get("value"):
            key = own  # the role instance's own id (ROL-1 / PRT-1)
        else:  # the same person in the same role for the same organization: one resource
            org_id = seg.value(organization, 10) or seg.value(organization, 3)
            key = derived("practitioner-role", self.ctx.default_system or "-",
                          seg.value(person), seg.value(role), org_id)  # fmt: skip
        url = self.put(res, key)
        encounter = self._encounter_resource()
        if encounter is not None and seg.name == "ROL":
            part: dict = {"individual": {"reference": url}}
            if code:
                part["type"] = [code]
            if period:
                part["period"] = period
            encounter.setdefault("participant", []).append(part)

    def _report_roles(self, report: dict, obr: Segment) -> None:
        """OBR-32 → resultsInterpreter, OBR-34 / OBR-35 → performer, each a PractitionerRole
        (IG OBR[DiagnosticReport] with NDL[PractitionerRole]: NDL.1 the person, NDL.2/3 the
        period, NDL.4-7 the place), the role from table 0443 (PI, TN, TR); the performers carry
        the IG's event-performerFunction (SPRF technician, TRANS transcriptionist). A name
        without an id is no record: left out."""
        for n, element, code, display, function in REPORT_ROLES:
            for ndl in obr.reps(n):
                ref = self._ndl_role(obr.where(n), ndl, code, display)
                if ref is None:
                    continue
                if function is not None:
                    ref["extension"] = [
                        {
                            "url": PERFORMER_FUNCTION,
                            "valueCodeableConcept": {
                                "coding": [{"system": PARTICIPATION, "code": function}]
                            },
                        }
                    ]
                report.setdefault(element, []).append(ref)

    def _ndl_role(self, where: str, ndl: Composite, code: str, display: str) -> dict | None:
        seps = self.message.separators
        cnn = ndl.component_raw(1).split(seps.subcomponent)  # CNN.1-11 as subcomponents
        cnn += [""] * (11 - len(cnn))
        xcn = seps.component.join([*cnn[:8], seps.subcomponent.join(cnn[8:11])])
        who = self.parties.practitioner(Composite(xcn, seps, ndl._message))  # noqa: SLF001
        if who is None or "reference" not in who:
            return None
        return self._role(
            who, code, display, where, start=ndl.c(2), end=ndl.c(3),
            place=Composite(seps.component.join(ndl.component_raw(i) for i in (4, 5, 6, 7)),
                            seps, ndl._message),  # noqa: SLF001
        )  # fmt: skip

    def _role(  # type: ignore[no-untyped-def]
        self, who: dict, code: str, display: str, where: str, *, start="", end="", place=None
    ) -> dict:
        """A PractitionerRole of ``who`` (a Practitioner reference) in table 0443 role
        ``code``: one per person and role across messages (keyed on both)."""
        res: dict = {
            "resourceType": "PractitionerRole",
            "practitioner": who,
            "code": [{"coding": [{"system": PROVIDER_ROLE, "code": code, "display": display}]}],
        }
        period: dict[str, str] = {}
        for part, value in (("start", start), ("end", end)):
            when = dt.date_time(value, self.ctx.tz, where) if value else None
            if when:
                period[part] = when
        if period:
            res["period"] = period
        located = self.parties.location(place) if place is not None else None
        if located and "reference" in located:
            res["location"] = [located]
        person: dict = next(
            (e["resource"]["identifier"][0] for e in self.parties.entries
             if e["fullUrl"] == who["reference"]), {},
        )  # fmt: skip
        key = derived("practitioner-role", person.get("system") or "-", person.get("value", ""),
                      code, "")  # fmt: skip
        out = {"reference": self.put(res, key)}
        if who.get("display"):
            out["display"] = who["display"]
        return out

    def _observer_role(self, practitioner: dict, ident: dict) -> dict:
        """OBX-16 (responsible observer) → a PractitionerRole of the Practitioner, after the IG
        OBX[Observation] map: ``performer[1](PractitionerRole.practitioner(Practitioner))``,
        code ``responsibleObserver`` (the code and system the IG names); one per person."""
        res = {
            "resourceType": "PractitionerRole",
            "practitioner": practitioner,
            "code": [{"coding": [OBSERVER_ROLE], "text": "responsible observer"}],
        }
        key = derived("practitioner-role", ident.get("system") or "-", ident.get("value", ""),
                      OBSERVER_ROLE["code"], "")  # fmt: skip
        out = {"reference": self.put(res, key)}
        if practitioner.get("display"):
            out["display"] = practitioner["display"]
        return out

    def _encounter_resource(self) -> dict | None:
        for e in self.entries:
            if e.get("fullUrl") == self.encounter_url:
                return e["resource"]
        return None

    def _related_person(self, nk1: Segment) -> None:
        if self.patient_url is None:
            return
        res: dict = {"resourceType": "RelatedPerson", "patient": self.subject()}
        names = [n for n in (dt.xpn(r) for r in nk1.reps(2)) if n]
        if names:
            res["name"] = names
        relations = [c for c in (dt.table_concept(r, "0063") for r in nk1.reps(3)) if c]
        role = dt.table_concept(nk1.first(7), "0131")
        if role:
            relations.append(role)
        if relations:
            res["relationship"] = relations
        addresses = [a for a in (dt.xad(r) for r in nk1.reps(4)) if a]
        if addresses:
            res["address"] = addresses
        telecom = [t for t in (dt.xtn(r, "home") for r in nk1.reps(5)) if t]
        telecom += [t for t in (dt.xtn(r, "work") for r in nk1.reps(6)) if t]
        if telecom:
            res["telecom"] = telecom
        sex = nk1.value(15).upper()
        if sex in codes.GENDER:
            res["gender"] = codes.GENDER[sex]
        born = nk1.value(16)
        if born:
            res["birthDate"] = dt.birth_date(born, nk1.where(16))
        period = _period(nk1, 8, 9, self.ctx)
        if period:
            res["period"] = period
        own = [
            i for i in (dt.cx(r, self.ctx.default_system, nk1.where(33)) for r in nk1.reps(33)) if i
        ]
        if own:
            res["identifier"] = own
            ident = own[0] if "system" in own[0] else self.segment_identifier(nk1)
        else:
            who = names[0] if names else {}
            label = " ".join([who.get("family", ""), *who.get("given", [])]).strip()
            rel = nk1.value(3) or nk1.value(7)
            ident = self.patient_identifier("related-person", label or nk1.value(1), rel)
        self.put(res, ident)

    def _patient_care(self, pd1: Segment) -> None:
        """PD1-3 → Patient.managingOrganization, PD1-4 → generalPractitioner (a patient a
        message may update only: a conditional create leaves a known patient as it is)."""
        patient = self.entries[0]["resource"] if self.entries else None
        if patient is None or patient.get("resourceType") != "Patient":
            return
        org = self.parties.organization(pd1.first(3))
        if org and "reference" in org:
            patient["managingOrganization"] = org
        gps = [p for p in (self.parties.practitioner(r) for r in pd1.reps(4)) if p]
        if gps:
            patient["generalPractitioner"] = gps

    def _allergy(self, al1: Segment, iam: bool = False) -> None:
        """AL1 (and IAM, its v2.6+ form: the same first fields, IAM-7 its identifier)."""
        code = dt.cwe(al1.first(3))
        if code is None or self.patient_url is None:
            return
        res: dict = {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": _concept("allergyintolerance-clinical", "active"),
            "code": code,
            "patient": self.subject(),
        }
        category = ALLERGY_CATEGORY.get(al1.value(2).upper())
        if category:
            res["category"] = [category]
        criticality = CRITICALITY.get(al1.value(4).upper())
        if criticality:
            res["criticality"] = criticality
        reactions = [r.text().replace("^", " ").strip() for r in al1.reps(5)]
        reactions = [r for r in reactions if r]
        if reactions:
            res["reaction"] = [{"manifestation": [{"text": r} for r in reactions]}]
        n = 11 if iam else 6  # onset: AL1-6, IAM-11
        onset = dt.date_time(al1.value(n), self.ctx.tz, al1.where(n))
        if onset:
            res["onsetDateTime"] = onset
        if iam and al1.value(6).upper() == "D":  # IAM-6 action code D: delete
            res["verificationStatus"] = _concept(
                "allergyintolerance-verification", "entered-in-error"
            )
            del res["clinicalStatus"]
        first = code.get("coding", [{}])[0]
        key = first.get("code") or code.get("text", "")
        own = self.ei(al1.first(7)) if iam else None
        self.put(res, own or self.patient_identifier("allergy", first.get("system", ""), key))

    def _condition(self, dg1: Segment) -> str | None:
        code = dt.cwe(dg1.first(3))
        if code is None and dg1.value(4):
            text = dg1.first(4)
            code = {"text": text.text() if text is not None else dg1.value(4)}
        if code is None or self.patient_url is None:
            return None
        res: dict = {
            "resourceType": "Condition",
            "clinicalStatus": _concept("condition-clinical", "active"),
            "category": [_concept("condition-category", "encounter-diagnosis")],
            "code": code,
            "subject": self.subject(),
        }
        if self.encounter_url:
            res["encounter"] = {"reference": self.encounter_url}
        onset = dt.date_time(dg1.value(5), self.ctx.tz, dg1.where(5))
        if onset:
            res["onsetDateTime"] = onset
        recorded = dt.date_time(dg1.value(19), self.ctx.tz, dg1.where(19))
        if recorded:
            res["recordedDate"] = recorded
        clinician = self.parties.practitioner(dg1.first(16))
        if clinician:
            res["asserter"] = clinician
        own = self.ei(dg1.first(20))
        if own is None:
            first = code.get("coding", [{}])[0]
            own = self.patient_identifier(
                "condition", first.get("system", ""), first.get("code") or code.get("text", "")
            )
        return self.put(res, own)

    def _problem(self, prb: Segment) -> None:
        code = dt.cwe(prb.first(3))
        if code is None or self.patient_url is None:
            return
        event = self.message.message_type[1]
        res: dict = {
            "resourceType": "Condition",
            "category": [_concept("condition-category", "problem-list-item")],
            "code": code,
            "subject": self.subject(),
        }
        if event == "PC3" or prb.value(1).upper() == "DE":
            res["verificationStatus"] = _concept("condition-ver-status", "entered-in-error")
        else:
            status = prb.value(14).lower()
            res["clinicalStatus"] = _concept(
                "condition-clinical",
                status if status in ("active", "inactive", "resolved") else "active",
            )
        recorded = dt.date_time(prb.value(2), self.ctx.tz, prb.where(2))
        if recorded:
            res["recordedDate"] = recorded
        onset = dt.date_time(prb.value(16), self.ctx.tz, prb.where(16))
        if onset:
            res["onsetDateTime"] = onset
        own = self.ei(prb.first(4))
        self.put(res, own or self.patient_identifier("problem", prb.value(3)))

    def _procedure(self, pr1: Segment) -> None:
        code = dt.cwe(pr1.first(3))
        if code is None and pr1.value(4):
            code = {"text": pr1.value(4)}
        if code is None or self.patient_url is None:
            return
        res: dict = {
            "resourceType": "Procedure",
            "status": "completed",
            "code": code,
            "subject": self.subject(),
        }
        if self.encounter_url:
            res["encounter"] = {"reference": self.encounter_url}
        when = dt.date_time(pr1.value(5), self.ctx.tz, pr1.where(5))
        if when:
            res["performedDateTime"] = when
        performers = [p for p in (self.parties.practitioner(r) for r in pr1.reps(12)) if p]
        if performers:
            res["performer"] = [{"actor": p} for p in performers]
        own = self.ei(pr1.first(19))
        if own is None:
            first = code.get("coding", [{}])[0]
            own = self.patient_identifier(
                "procedure", first.get("code") or code.get("text", ""), pr1.value(5)
            )
        self.put(res, own)

    def _coverage(self, in1: Segment) -> None:
        if self.patient_url is None:
            return
        payor = self.parties.organization(_xon_of_in1(in1))
        res: dict = {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": self.subject(),
            "payor": [payor or self.subject()],
        }
        plan = dt.cwe(in1.first(2))
        if plan and plan.get("coding"):
            res["class"] = [
                {"type": _concept("coverage-class", "plan"), "value": plan["coding"][0]["code"]}
            ]
        kind = dt.table_concept(in1.first(15), "0086")
        if kind:
            res["type"] = kind
        period = _period(in1, 12, 13, self.ctx)
        if period:
            res["period"] = period
        policy = in1.value(36)
        if policy:
            res["subscriberId"] = policy
        relation = in1.value(17)
        if relation:
            res["relationship"] = {"coding": [{"system": RELATED_SYSTEM, "code": relation}]}
        if policy:
            ident = {"value": policy, "type": dt.identifier_type("MB")}
            system = self.ctx.default_system
            if system:
                ident["system"] = system + "/policy"
        else:
            ident = self.patient_identifier("coverage", in1.value(2), in1.value(3), in1.value(1))
        self.put(res, ident)

    def _service_request(self, orc: Segment | None, obr: Segment | None) -> str | None:
        if self.patient_url is None:
            return None
        status = _order_status(orc)
        res: dict = {
            "resourceType": "ServiceRequest",
            "status": status,
            "intent": "order",
            "subject": self.subject(),
        }
        idents = []
        for kind, n in (("PLAC", 2), ("FILL", 3)):
            rep = (obr.first(n) if obr is not None else None) or (orc.first(n) if orc else None)
            ident = dt.ei(rep, self.ctx.default_system) if rep else None
            if ident:
                ident["type"] = {"coding": [{"system": codes.V2 + "0203", "code": kind}]}
                idents.append(ident)
        code = dt.cwe(obr.first(4)) if obr is not None else None
        if code:
            res["code"] = code
        if self.encounter_url:
            res["encounter"] = {"reference": self.encounter_url}
        if orc is not None:
            authored = dt.date_time(orc.value(9), self.ctx.tz, orc.where(9))
            if authored:
                res["authoredOn"] = authored
            requester = self.parties.practitioner(orc.first(12))
            if requester and "reference" in requester:  # IG ORC[ServiceRequest]: ORC-12 →
                # requester(PractitionerRole.practitioner(Practitioner)), role OP (table 0443)
                requester = self._role(requester, "OP", "Ordering Provider", orc.where(12))
            if requester:
                res["requester"] = requester
        if obr is not None:
            reasons = [c for c in (dt.cwe(r) for r in obr.reps(31)) if c]
            if reasons:
                res["reasonCode"] = reasons
            if not res.get("requester"):
                requester = self.parties.practitioner(obr.first(16))
                if requester:
                    res["requester"] = requester
            when = dt.date_time(obr.value(6) or obr.value(7), self.ctx.tz, obr.where(6))
            if when:
                res["occurrenceDateTime"] = when
        if idents:
            res["identifier"] = idents[1:]
            return self.put(res, idents[0])
        return self.put(res, self.segment_identifier(obr or orc))  # type: ignore[arg-type]

    def _specimen(self, spm: Segment, request_url: str | None) -> None:
        res: dict = {"resourceType": "Specimen"}
        if self.patient_url:
            res["subject"] = self.subject()
        kind = dt.cwe(spm.first(4))
        if kind:
            res["type"] = kind
        collection: dict = {}
        collected = spm.first(17)
        when = dt.date_time(collected.c(1), self.ctx.tz, spm.where(17)) if collected else None
        if when:
            collection["collectedDateTime"] = when
        site = dt.cwe(spm.first(8))
        if site:
            collection["bodySite"] = site
        method = dt.cwe(spm.first(7))
        if method:
            collection["method"] = method
        if collection:
            res["collection"] = collection
        received = dt.date_time(spm.value(18), self.ctx.tz, spm.where(18))
        if received:
            res["receivedTime"] = received
        if request_url:
            res["request"] = [{"reference": request_url}]
        first = spm.first(2)
        own = None
        if first is not None:  # EIP: placer (component 1) and filler (component 2) EIs
            for comp in (2, 1):
                subs = first.subs(comp)
                if subs and subs[0]:
                    system = dt.hd_system(*(subs + ["", "", ""])[1:4]) or self.ctx.default_system
                    own = {"value": subs[0], **({"system": system} if system else {})}
                    break
        self.put(res, own or self.segment_identifier(spm))

    def _immunization(self, rxa: Segment, orc: Segment | None) -> dict | None:
        vaccine = dt.cwe(rxa.first(5))
        when = dt.date_time(rxa.value(3), self.ctx.tz, rxa.where(3))
        if vaccine is None or when is None or self.patient_url is None:
            return None
        res: dict = {
            "resourceType": "Immunization",
            "status": IMMUNIZATION_STATUS.get(rxa.value(20).upper(), "completed"),
            "vaccineCode": vaccine,
            "patient": self.subject(),
            "occurrenceDateTime": when,
        }
        if self.encounter_url:
            res["encounter"] = {"reference": self.encounter_url}
        amount = dt.number(rxa.value(6))
        if amount is not None and amount != 999:
            res["doseQuantity"] = {"value": amount, **dt.unit(rxa.first(7))}
        if rxa.value(15):
            res["lotNumber"] = rxa.value(15)
        expiry = dt.date_time(rxa.value(16), None, rxa.where(16))
        if expiry:
            res["expirationDate"] = expiry[:10]
        maker = self.parties.organization(_cwe_as_xon(rxa.first(17)))
        if maker:
            res["manufacturer"] = maker
        performers = [p for p in (self.parties.practitioner(r) for r in rxa.reps(10)) if p]
        if performers:
            res["performer"] = [{"actor": p} for p in performers]
        if res["status"] == "not-done":
            reason = dt.cwe(rxa.first(18))
            if reason:
                res["statusReason"] = reason
        own = None
        if orc is not None:
            own = self.ei(orc.first(3))
            own = own or (self.ei(orc.first(2)))
        self.put(res, own or self.segment_identifier(rxa))
        return res

    def _medication_request(self, seg: Segment, orc: Segment | None) -> dict | None:
        give = seg.first(2) if seg.name == "RXE" else seg.first(1)
        medication = dt.cwe(give)
        if medication is None or self.patient_url is None:
            return None
        status = _order_status(orc)
        res: dict = {
            "resourceType": "MedicationRequest",
            "status": MED_STATUS.get(status, "unknown"),
            "intent": "order",
            "medicationCodeableConcept": medication,
            "subject": self.subject(),
        }
        if self.encounter_url:
            res["encounter"] = {"reference": self.encounter_url}
        if orc is not None:
            authored = dt.date_time(orc.value(9), self.ctx.tz, orc.where(9))
            if authored:
                res["authoredOn"] = authored
            requester = self.parties.practitioner(orc.first(12))
            if requester:
                res["requester"] = requester
        if seg.name == "RXE":
            low = dt.number(seg.value(3))
            if low is not None:
                dose: dict = {"doseQuantity": {"value": low, **dt.unit(seg.first(5))}}
                res["dosageInstruction"] = [{"doseAndRate": [dose]}]
            quantity = dt.number(seg.value(10))
            dispense: dict = {}
            if quantity is not None:
                dispense["quantity"] = {"value": quantity, **dt.unit(seg.first(11))}
            repeats = dt.number(seg.value(12))
            if isinstance(repeats, int) and repeats >= 0:
                dispense["numberOfRepeatsAllowed"] = repeats
            if dispense:
                res["dispenseRequest"] = dispense
        idents = []
        if orc is not None:
            for kind, n in (("PLAC", 2), ("FILL", 3)):
                ident = self.ei(orc.first(n))
                if ident:
                    ident["type"] = {"coding": [{"system": codes.V2 + "0203", "code": kind}]}
                    idents.append(ident)
        if idents:
            res["identifier"] = idents[1:]
        url = self.put(res, idents[0] if idents else self.segment_identifier(seg))
        res["_url"] = url  # removed before the bundle is returned (see finish)
        return res

    def _dispense(self, rxd: Segment, orc: Segment | None, request: dict | None) -> None:
        medication = dt.cwe(rxd.first(2))
        if medication is None:
            return
        res: dict = {
            "resourceType": "MedicationDispense",
            "status": "completed",
            "medicationCodeableConcept": medication,
        }
        if self.patient_url:
            res["subject"] = self.subject()
        handed = dt.date_time(rxd.value(3), self.ctx.tz, rxd.where(3))
        if handed:
            res["whenHandedOver"] = handed
        amount = dt.number(rxd.value(4))
        if amount is not None:
            res["quantity"] = {"value": amount, **dt.unit(rxd.first(5))}
        if request is not None and "_url" in request:
            res["authorizingPrescription"] = [{"reference": request["_url"]}]
        own = self.ei(rxd.first(7))
        self.put(res, own or self.segment_identifier(rxd))

    def _document(self, txa: Segment) -> dict | None:
        if self.patient_url is None:
            return None
        event = self.message.message_type[1]
        res: dict = {
            "resourceType": "DocumentReference",
            "status": "entered-in-error" if event == "T11" else "current",
            "subject": self.subject(),
            "content": [],
        }
        doc_status = DOC_STATUS.get(txa.value(17).upper())
        if doc_status:
            res["docStatus"] = doc_status
        kind = dt.table_concept(txa.first(2), "0270")
        if kind:
            res["type"] = kind
        when = dt.instant(txa.value(4) or txa.value(6), self.ctx.tz, txa.where(4))
        if when:
            res["date"] = when
        authors = [p for p in (self.parties.practitioner(r) for r in txa.reps(9)) if p]
        if authors:
            res["author"] = authors
        if self.encounter_url:
            res["context"] = {"encounter": [{"reference": self.encounter_url}]}
        unique = self.ei(txa.first(12))
        if unique:
            res["masterIdentifier"] = dict(unique)
        parent = self.ei(txa.first(13))
        if parent:
            res["relatesTo"] = [
                {
                    "code": "replaces" if event in ("T09", "T10") else "appends",
                    "target": {"identifier": parent},
                }
            ]
        self.put(res, unique or self.segment_identifier(txa))
        return res

    def _document_content(self, doc: dict, obx: Segment, text: list[str]) -> None:
        kind = obx.value(2).upper()
        if kind == "ED":
            ed = obx.first(5)
            if ed is None:
                return
            mime = (
                "/".join(p for p in (ed.c(2).lower(), ed.c(3).lower()) if p)
                or "application/octet-stream"
            )
            data = ed.c(5).replace(" ", "")
            if ed.c(4).upper() == "BASE64" and data:
                doc["content"].append({"attachment": {"contentType": mime, "data": data}})
            return
        for rep in obx.reps(5):
            if rep.text().strip():
                text.append(rep.text())
        if text:
            data = base64.b64encode("\n".join(text).encode("utf-8")).decode("ascii")
            plain = [
                c for c in doc["content"] if c["attachment"].get("contentType") == "text/plain"
            ]
            if plain:
                plain[0]["attachment"]["data"] = data
            else:
                doc["content"].append({"attachment": {"contentType": "text/plain", "data": data}})

    def _observation(self, obx: Segment, request_url: str | None) -> None:
        if self.patient_url is None:
            return
        res = obx_map.observation(obx, [], self.patient_url, self.ctx)
        if res is None:
            return
        if self.encounter_url:
            res["encounter"] = {"reference": self.encounter_url}
        if request_url:
            res["basedOn"] = [{"reference": request_url}]
        self._materialise(res)
        own = res.pop("identifier", [None])[0]
        self.put(res, own or self.segment_identifier(obx))

    def _appointment(self, sch: Segment) -> dict:
        res: dict = {"resourceType": "Appointment", "status": "", "participant": []}
        idents = [
            i
            for i in (dt.ei(r, self.ctx.default_system) for r in (sch.first(1), sch.first(2)) if r)
            if i
        ]
        reason = dt.cwe(sch.first(7)) or dt.cwe(sch.first(6))
        if reason:
            res["reasonCode"] = [reason]
        kind = dt.table_concept(sch.first(8), "0277")
        if kind:
            res["appointmentType"] = kind
        minutes = dt.number(sch.value(9))
        if isinstance(minutes, int | float) and minutes > 0:
            unit = sch.value(10).upper()
            factor = {"H": 60, "HR": 60, "HOURS": 60, "S": 1 / 60, "D": 1440}.get(unit, 1)
            res["minutesDuration"] = int(minutes * factor) or 1
        timing = sch.first(11)
        if timing is not None:
            start = dt.instant(timing.c(4), self.ctx.tz, sch.where(11))
            end = dt.instant(timing.c(5), self.ctx.tz, sch.where(11))
            if start and end:
                res["start"], res["end"] = start, end
        filler = APPOINTMENT_STATUS.get(sch.value(25).upper())
        if filler:
            res["status"] = filler
        if self.patient_url:
            res["participant"].append({"actor": self.subject(), "status": "accepted"})
        contact = self.parties.practitioner(sch.first(12)) or self.parties.practitioner(
            sch.first(16)
        )
        if contact:
            res["participant"].append({"actor": contact, "status": "accepted"})
        res["_ident"] = idents[-1] if idents else self.segment_identifier(sch)
        if len(idents) > 1:
            res["identifier"] = idents[:-1]
        res["_url"] = self.put(res, res["_ident"])
        return res

    def _appointment_detail(self, appt: dict, seg: Segment) -> None:
        if seg.name == "TQ1":
            start = dt.instant(seg.value(7), self.ctx.tz, seg.where(7))
            end = dt.instant(seg.value(8), self.ctx.tz, seg.where(8))
            if start and end:
                appt["start"], appt["end"] = start, end
            elif start and "start" not in appt:
                appt["_start"] = start
            return
        status_field = {"AIS": 10, "AIG": 14, "AIL": 12, "AIP": 12}[seg.name]
        when_field = {"AIS": 4, "AIG": 8, "AIL": 6, "AIP": 6}[seg.name]
        status = APPOINTMENT_STATUS.get(seg.value(status_field).upper())
        part_status = "declined" if status == "cancelled" else "accepted"
        when = dt.instant(seg.value(when_field), self.ctx.tz, seg.where(when_field))
        if when and "start" not in appt and "_start" not in appt:
            appt["_start"] = when
        if seg.name == "AIS":
            service = dt.cwe(seg.first(3))
            if service:
                appt.setdefault("serviceType", []).append(service)
            return
        if seg.name == "AIL":
            actor = self.parties.location(seg.first(3))
        elif seg.name == "AIP":
            actor = self.parties.practitioner(seg.first(3))
        else:
            resource = seg.first(3)
            actor = {"display": resource.c(2) or resource.c(1)} if resource else None
        role = dt.cwe(seg.first(4))
        participant: dict = {"status": part_status}
        if actor:
            participant["actor"] = actor
        if role:
            participant["type"] = [role]
        if actor or role:
            appt["participant"].append(participant)

    def _charge(self, ft1: Segment) -> None:
        code = dt.cwe(ft1.first(7))
        if code is None or self.patient_url is None:
            return
        kind = ft1.value(6).upper()
        res: dict = {
            "resourceType": "ChargeItem",
            "status": "billed" if kind in ("CG", "") else "aborted" if kind == "CD" else "billable",
            "code": code,
            "subject": self.subject(),
        }
        if self.encounter_url:
            res["context"] = {"reference": self.encounter_url}
        span = ft1.first(4)
        when = dt.date_time(span.c(1), self.ctx.tz, ft1.where(4)) if span else None
        if when:
            res["occurrenceDateTime"] = when
        quantity = dt.number(ft1.value(10))
        if quantity is not None:
            res["quantity"] = {"value": quantity}
        performers = [p for p in (self.parties.practitioner(r) for r in ft1.reps(20)) if p]
        if performers:
            res["performer"] = [{"actor": p} for p in performers]
        self._charged_procedure(ft1)
        own = (
            {
                "value": ft1.value(2),
                **({"system": self.ctx.default_system} if self.ctx.default_system else {}),
            }
            if ft1.value(2)
            else None
        )
        self.put(res, own or self.segment_identifier(ft1))

    def _charged_procedure(self, ft1: Segment) -> None:
        """FT1-25 (procedure code) → Procedure, as the IG's FT1 map does."""
        code = dt.cwe(ft1.first(25))
        if code is None:
            return
        res: dict = {
            "resourceType": "Procedure",
            "status": "completed",
            "code": code,
            "subject": self.subject(),
        }
        if self.encounter_url:
            res["encounter"] = {"reference": self.encounter_url}
        span = ft1.first(4)
        when = dt.date_time(span.c(1), self.ctx.tz, ft1.where(4)) if span else None
        if when:
            res["performedDateTime"] = when
        first = code.get("coding", [{}])[0]
        self.put(res, self.patient_identifier("procedure", first.get("code", ""), when or ""))

    def _referral(self, rf1: Segment) -> str | None:
        if self.patient_url is None:
            return None
        res: dict = {
            "resourceType": "ServiceRequest",
            "status": REFERRAL_STATUS.get(rf1.value(1).upper(), "active"),
            "intent": "order",
            "subject": self.subject(),
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "3457005",
                            "display": "Patient referral",
                        }
                    ]
                }
            ],
        }
        priority = REFERRAL_PRIORITY.get(rf1.value(2).upper())
        if priority:
            res["priority"] = priority
        kind = dt.table_concept(rf1.first(3), "0281")
        if kind:
            res["code"] = kind
        authored = dt.date_time(rf1.value(7), self.ctx.tz, rf1.where(7))
        if authored:
            res["authoredOn"] = authored
        reasons = [c for c in (dt.cwe(r) for r in rf1.reps(10)) if c]
        if reasons:
            res["reasonCode"] = reasons
        own = self.ei(rf1.first(6))
        return self.put(res, own or self.segment_identifier(rf1))

    def _provider(self, prd: Segment) -> None:
        first = prd.first(7)
        if first is None or not first.c(1):
            return
        system = (
            dt.hd_system(first.c(3), "", "") if first.c(3) else None
        ) or self.ctx.default_system
        ident = {"value": first.c(1), **({"system": system} if system else {})}
        res: dict = {"resourceType": "Practitioner"}
        names = [n for n in (dt.xpn(r) for r in prd.reps(2)) if n]
        if names:
            res["name"] = names
        addresses = [a for a in (dt.xad(r) for r in prd.reps(3)) if a]
        if addresses:
            res["address"] = addresses
        telecom = [t for t in (dt.xtn(r, "work") for r in prd.reps(5)) if t]
        if telecom:
            res["telecom"] = telecom
        self.put(res, ident)

    def _z_segment(self, seg: Segment) -> None:
        target = self.last or (self.entries[0]["resource"] if self.entries else None)
        if target is None:
            return
        sep = self.message.separators.field
        text = sep.join([seg.name, *(seg.raw(i) for i in range(1, len(seg._fields)))])  # noqa: SLF001
        target.setdefault("extension", []).append({"url": SEGMENT_EXTENSION, "valueString": text})

    def finish(self) -> dict:
        source = message_source(self.message)
        for e in [*self.entries, *self.parties.entries]:
            for key in ("_url", "_ident", "_start", obr_map.SEGMENT_KEY):
                e["resource"].pop(key, None)
            for loc in e["resource"].get("location", []):  # an Encounter's (_materialise)
                if isinstance(loc, dict):
                    loc.pop(pv1_map.FIELD_KEY, None)
            if e["resource"].get("resourceType") != "Parameters":
                e["resource"].setdefault("meta", {})["source"] = source
        return self.bundle()


def _key_of(patient_entry: dict) -> str:
    url = patient_entry["request"].get("url", "")
    ine = patient_entry["request"].get("ifNoneExist", "")
    query = url.split("?", 1)[1] if "?" in url else ine
    return query.removeprefix("identifier=")


def _concept(system: str, code: str) -> dict:
    return {"coding": [{"system": CLINICAL + system, "code": code}]}


def _period(seg: Segment, start_n: int, end_n: int, ctx: MapContext) -> dict:
    out = {}
    for key, n in (("start", start_n), ("end", end_n)):
        value = dt.date_time(seg.value(n), ctx.tz, seg.where(n))
        if value:
            out[key] = value
    return out


def _order_status(orc: Segment | None) -> str:
    if orc is None:
        return "active"
    return ORDER_STATUS.get(orc.value(5).upper()) or ORDER_CONTROL.get(
        orc.value(1).upper(), "active"
    )


def _has_detail_after(message: Message, orc: Segment) -> bool:
    """Whether an order detail segment (OBR, RXO, RXE, RXA …) follows this ORC before the next."""
    for seg in message.segments[orc.index + 1 :]:
        if seg.name == "ORC":
            return False
        if seg.name in ("OBR", "RXO", "RXE", "RXD", "ODS", "ODT", "TXA"):
            return True
    return False


def _route(med: dict, rxr: Segment) -> None:
    route = dt.cwe(rxr.first(1))
    site = dt.cwe(rxr.first(2))
    if route is None and site is None:
        return
    if med.get("resourceType") == "Immunization":
        if route:
            med["route"] = route
        if site:
            med["site"] = site
    elif med.get("resourceType") == "MedicationRequest":
        dosage = med.setdefault("dosageInstruction", [{}])[0]
        if route:
            dosage["route"] = route
        if site:
            dosage["site"] = site


def _xon_of_in1(in1: Segment) -> Composite | None:
    """The insurer: IN1-4 (XON, its name) with IN1-3 (CX, its id) when IN1-4 gives no id."""
    name = in1.first(4)
    company = in1.first(3)
    if name is None and company is None:
        return None
    seps = in1._seps  # noqa: SLF001
    parts = [""] * 10
    parts[0] = name.c(1) if name else ""
    if name is not None and name.c(10):
        parts[9] = name.component_raw(10)
    elif company is not None:
        parts[9] = company.component_raw(1)
        parts[5] = company.component_raw(4)
    base = name or company
    assert base is not None
    return Composite(seps.component.join(parts), seps, base._message)  # noqa: SLF001


def _cwe_as_xon(c: Composite | None) -> Composite | None:
    """RXA-17 (manufacturer, a CWE of table 0227 MVX): the code as the organisation's id."""
    if c is None or not c.c(1):
        return None
    seps = c._seps  # noqa: SLF001
    parts = [
        c.component_raw(2) or c.component_raw(1),
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        c.component_raw(1),
    ]
    return Composite(seps.component.join(parts), seps, c._message)  # noqa: SLF001


def _appointment_finish(appt: dict, event: str, ctx: MapContext) -> None:
    if not appt.get("status"):
        appt["status"] = SIU_STATUS.get(event, "booked")
    if "start" not in appt and "_start" in appt and appt.get("minutesDuration"):
        from datetime import datetime, timedelta

        start = appt["_start"]
        begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
        end = begin + timedelta(minutes=appt["minutesDuration"])
        appt["start"] = start
        appt["end"] = (
            end.isoformat().replace("+00:00", "Z") if start.endswith("Z") else end.isoformat()
        )
    if "start" not in appt and appt["status"] not in ("proposed", "cancelled", "waitlist"):
        ctx.warn(
            "101", "the appointment has no start and end time (TQ1, SCH-11): stored as proposed"
        )
        appt["status"] = "proposed"
    if not appt["participant"]:
        appt["participant"].append({"status": "needs-action", "type": [{"text": "unknown"}]})


def with_patient(
    message: Message, ctx: MapContext, *, update: bool, groups: bool = False, account: str = ""
) -> dict:
    """The common shape of a message about one patient: PID → Patient (a conditional update
    when ``update``, else a conditional create that leaves a known patient as it is), then
    every other segment walked in order. With ``groups``, every PID and PV1 group of the
    message (``Builder.walk``); ``account`` the status of the PID-18 Accounts."""
    from mappings.hl7v2.adt import patient_entry

    builder = Builder(message, ctx)
    builder.groups = groups
    builder.account_status = account or builder.account_status
    _, patient = patient_entry(message, ctx, update=update)
    builder.use_core({"entry": [patient]})
    builder.walk()
    return builder.finish()


def around(core: dict, message: Message, ctx: MapContext, skip: frozenset[str]) -> dict:
    """A core mapping's Bundle (``adt``, ``oru``, ``mrg``) with the other segments walked."""
    builder = Builder(message, ctx)
    builder.use_core(core)
    builder.walk(skip)
    return builder.finish()


# What the walk writes besides the message's own resources: the parties and the patient's
# context (an Account from PID-18, a visit from PV1).
CONTEXT = frozenset(
    {"Patient", "Encounter", "EpisodeOfCare", "Account", "Practitioner", "Organization", "Location"}
)
# The patient-level segments any message may carry (NK1, AL1, DG1, PR1, IN1, OBX).
PATIENT_LEVEL = frozenset(
    {"RelatedPerson", "AllergyIntolerance", "Condition", "Procedure", "Coverage", "Observation"}
)
