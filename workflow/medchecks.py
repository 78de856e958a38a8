"""Medication checks: when a ``MedicationRequest`` is made in a case (a doctor's prescription at
``$complete``, a treatment plan's medication), it is checked against the patient's
``AllergyIntolerance`` records and their other active ``MedicationRequest`` s, and each finding
is recorded as a FHIR R4 ``DetectedIssue`` (detectedissue.html) in the same transaction as the
request, which names them in ``MedicationRequest.detectedIssue``.

One rule engine; the knowledge is data (``terminology/formulary.py``: the RxNorm fragment with
ingredients and drug classes, the interaction table with its sources). What is checked:

- **Allergy** (``code`` ALGY, v3-ActCode): an allergy whose ``code`` has an RxNorm coding equal
  to the prescribed code or one of its ingredients (severity high), or an RxNorm coding of a
  formulary drug sharing an allergy-cross-reactive class with it, or a Hearth drug-class coding
  of such a class (severity high when the allergy's criticality is high, else moderate).
  Allergies that are inactive, resolved, refuted or entered in error are not checked; an allergy
  coded only in SNOMED CT or as text is not mapped (Hearth ships no SNOMED CT substance
  hierarchy) and is left to the reader of the allergy list.
- **Interaction** (``code`` DRG): a pair from the interaction table between the new request and
  another active request of the patient (ingredient or class on each side); the severity, words
  and source are the table's.

A request coded outside RxNorm or only as text is not checked (the web app marks it uncoded).
Each issue has an ``identifier`` made from what it is about (kind, the request pair or the
request and the allergy), so checking again finds the issue already there and writes nothing:
the check is idempotent on retry, and two requests made together give one interaction issue.
"""

from __future__ import annotations

import hashlib

from resources.storage.repository import Unit
from terminology.formulary import DRUG_CLASS as DRUG_CLASS_SYSTEM
from terminology.formulary import RXNORM, Drug, Formulary
from terminology.formulary import default as default_formulary
from workflow.tasks import now

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ISSUE_IDENTIFIER = "http://hearth.local/fhir/workflow/detected-issue"
ALLERGY = {"system": ACT_CODE, "code": "ALGY", "display": "Allergy Alert"}
INTERACTION = {"system": ACT_CODE, "code": "DRG", "display": "Drug Interaction Alert"}
_RANK = {"high": 0, "moderate": 1, "low": 2}
_NOT_CHECKED_CLINICAL = {"inactive", "resolved"}
_NOT_CHECKED_VERIFICATION = {"refuted", "entered-in-error"}


def _codes(concept: dict | None, system: str) -> list[str]:
    return [
        str(c["code"])
        for c in (concept or {}).get("coding") or ()
        if c.get("system") == system and c.get("code")
    ]


def drug_of(request: dict, formulary: Formulary) -> Drug | None:
    """What a MedicationRequest prescribes, as the formulary knows it; an RxNorm code outside the
    formulary is its own (only) ingredient; ``None`` when it carries no RxNorm code."""
    for code in _codes(request.get("medicationCodeableConcept"), RXNORM):
        known = formulary.drug(code)
        if known is not None:
            return known
        display = next(
            (
                c.get("display")
                for c in request["medicationCodeableConcept"].get("coding") or ()
                if c.get("code") == code
            ),
            None,
        )
        return Drug(code, display or f"RxNorm {code}", frozenset({code}), frozenset())
    return None


def _status(concept: dict | None) -> str | None:
    codes = [c.get("code") for c in (concept or {}).get("coding") or ()]
    return codes[0] if codes else None


def allergy_findings(drug: Drug, allergy: dict, formulary: Formulary) -> tuple[str, str] | None:
    """(severity, why) when ``allergy`` applies to ``drug``, else ``None``."""
    if _status(allergy.get("clinicalStatus")) in _NOT_CHECKED_CLINICAL:
        return None
    if _status(allergy.get("verificationStatus")) in _NOT_CHECKED_VERIFICATION:
        return None
    high = allergy.get("criticality") == "high"
    code = allergy.get("code")
    for rx in _codes(code, RXNORM):
        if rx == drug.code or rx in drug.ingredients:
            return (
                "high",
                f"{formulary.display(rx)} is {'the drug' if rx == drug.code else 'an ingredient'} prescribed",
            )
    for rx in _codes(code, RXNORM):
        allergen = formulary.drug(rx)
        shared = sorted(
            c
            for c in (allergen.classes if allergen else ())
            if c in drug.classes and formulary.cross_reactive(c)
        )
        if shared:
            names = ", ".join(formulary.class_display(c) for c in shared)
            return ("high" if high else "moderate"), (
                f"{formulary.display(rx)} and {drug.display} are both {names}: an allergy to one "
                "is taken as an allergy to the class"
            )
    for cls in _codes(code, DRUG_CLASS_SYSTEM):
        if cls in drug.classes:
            return ("high" if high else "moderate"), (
                f"{drug.display} is one of the {formulary.class_display(cls)}"
            )
    return None


def _key(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _issue(
    kind: dict, severity: str, patient: str, implicated: list[dict], detail: str, key: str
) -> dict:
    return {
        "resourceType": "DetectedIssue",
        "identifier": [{"system": ISSUE_IDENTIFIER, "value": key}],
        "status": "final",
        "code": {"coding": [kind], "text": kind["display"]},
        "severity": severity,
        "patient": {"reference": patient},
        "identifiedDateTime": now(),
        "implicated": implicated,
        "detail": detail,
    }


def findings(
    u: Unit, request_ref: str, request: dict, patient: str, formulary: Formulary | None = None
) -> list[dict]:
    """The DetectedIssues the stored MedicationRequest ``request_ref`` (``request``) raises for
    ``patient``, not yet written, most severe first."""
    formulary = formulary if formulary is not None else default_formulary()
    drug = drug_of(request, formulary)
    if drug is None:
        return []
    what = {"reference": request_ref, "display": drug.display}
    out = []
    allergies = u.read_many(u.match("AllergyIntolerance", [("patient", patient)]))
    for a in allergies:
        found = allergy_findings(drug, a.resource, formulary)
        if found is None:
            continue
        severity, why = found
        allergen = (a.resource.get("code") or {}).get("text") or next(
            (
                c.get("display")
                for c in (a.resource.get("code") or {}).get("coding") or ()
                if c.get("display")
            ),
            "a recorded substance",
        )
        out.append(
            _issue(
                ALLERGY,
                severity,
                patient,
                [what, {"reference": a.ref, "display": f"Allergy: {allergen}"}],
                f"Allergy: the patient has a recorded allergy or intolerance to {allergen}; {why}."
                + (" Criticality: high." if a.resource.get("criticality") == "high" else ""),
                _key("allergy", request_ref, a.ref),
            )
        )
    others = u.read_many(u.match("MedicationRequest", [("subject", patient), ("status", "active")]))
    for other in others:
        if other.ref == request_ref:
            continue
        other_drug = drug_of(other.resource, formulary)
        if other_drug is None:
            continue
        hits = sorted(formulary.interactions(drug, other_drug), key=lambda i: _RANK[i.severity])
        if not hits:
            continue
        worst = hits[0]
        url = next((i.url for i in hits if i.url), None)
        detail = " ".join(
            f"{i.summary} ({drug.display} with {other_drug.display}). {i.detail} Source: {i.source}."
            for i in hits
        )
        out.append(
            _issue(
                INTERACTION,
                worst.severity,
                patient,
                [what, {"reference": other.ref, "display": other_drug.display}],
                detail,
                _key("interaction", *sorted((request_ref, other.ref))),
            )
            | ({"reference": url} if url else {})
        )
    return sorted(out, key=lambda i: _RANK[i["severity"]])


def check(u: Unit, request_ref: str, patient: str, formulary: Formulary | None = None) -> list[str]:
    """Check the stored MedicationRequest ``request_ref`` in ``u``'s transaction: write its new
    DetectedIssues (an issue already recorded is not written again) and name every issue about
    it in ``MedicationRequest.detectedIssue``. Returns the issue references."""
    res_type, _, res_id = request_ref.partition("/")
    stored = u.read(res_type, res_id)
    refs = []
    for issue in findings(u, request_ref, stored.resource, patient, formulary):
        key = issue["identifier"][0]["value"]
        existing = u.match("DetectedIssue", [("identifier", f"{ISSUE_IDENTIFIER}|{key}")], limit=1)
        ref = u.read_many(existing)[0].ref if existing else u.create(issue).stored.ref
        refs.append(ref)
    named = [r.get("reference") for r in stored.resource.get("detectedIssue") or ()]
    missing = [r for r in refs if r not in named]
    if missing:
        body = {
            **stored.resource,
            "detectedIssue": [
                *(stored.resource.get("detectedIssue") or []),
                *({"reference": r} for r in missing),
            ],
        }
        u.update(res_type, res_id, body)
    return refs
