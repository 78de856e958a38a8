"""Vocabulary: the V2-to-FHIR IG concept maps Hearth applies (``mappings/codesystems/`` of the
IG: AdministrativeSex, PatientClass[EncounterClass], PatientClass[EncounterStatus],
Event[EncounterStatus], ObservationResultStatusCodesInterpretation, ResultStatus[Non-Queries],
InterpretationCodes) and the HL7 table 0396 coding-system names turned into FHIR system URIs
(the IG's CWE[CodeableConcept] map: CWE.3 "coding[1].system").
"""

from __future__ import annotations

from urllib.parse import quote

V2 = "http://terminology.hl7.org/CodeSystem/v2-"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
# Hearth's namespaces for names a message gives without a URI (documented in docs/hl7v2.md).
LOCAL_CODING_SYSTEM = "urn:hearth:hl7v2:coding-system:"

# HL7 table 0396 names (and common variants) → FHIR system URIs.
CODING_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "UCUM": UCUM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "ISO3166": "urn:iso:std:iso:3166",
    "ISO639": "urn:ietf:bcp:47",
}


def coding_system(name: str) -> str | None:
    """The FHIR system of a CWE.3 coding-system name: table 0396, ``HL7nnnn``/``HL7-nnnn`` →
    the v2 table's CodeSystem, a URI or OID as given, anything else Hearth's local namespace."""
    if not name:
        return None
    upper = name.upper()
    if upper in CODING_SYSTEMS:
        return CODING_SYSTEMS[upper]
    digits = upper.removeprefix("HL7").lstrip("-")
    if upper.startswith("HL7") and digits.isdigit() and len(digits) == 4:
        return f"{V2}{digits}"
    if "://" in name or name.startswith("urn:"):
        return name
    if _is_oid(name):
        return f"urn:oid:{name}"
    return LOCAL_CODING_SYSTEM + quote(name, safe="")


def _is_oid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) > 1 and all(p.isdigit() for p in parts)


# AdministrativeSex (HL7 table 0001) → administrative-gender
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "other"}

# PatientClass[EncounterClass] (table 0004) → v3 ActCode; codes without a v3 code keep table 0004
ENCOUNTER_CLASS = {
    "E": (ACT_CODE, "EMER", "emergency"),
    "I": (ACT_CODE, "IMP", "inpatient encounter"),
    "O": (ACT_CODE, "AMB", "ambulatory"),
    "P": (ACT_CODE, "PRENC", "pre-admission"),
    "R": (V2 + "0004", "R", "Recurring patient"),
    "B": (V2 + "0004", "B", "Obstetrics"),
    "C": (V2 + "0004", "C", "Commercial Account"),
    "N": (V2 + "0004", "N", "Not Applicable"),
    "U": (V2 + "0004", "U", "Unknown"),
}

# PatientClass[EncounterStatus]
STATUS_BY_CLASS = {"P": "planned", "U": "unknown"}  # every other class: in-progress

# Event[EncounterStatus] (table 0003)
STATUS_BY_EVENT = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "planned",
    "A05": "planned",
    "A11": "cancelled",
    "A13": "in-progress",
}

# ObservationResultStatusCodesInterpretation (table 0085) → observation-status. The IG leaves
# I, O, S, R, N, B, V, U without a target; Hearth's choices are marked.
OBSERVATION_STATUS = {
    "A": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "P": "preliminary",
    "W": "entered-in-error",
    "X": "cancelled",
    "I": "registered",  # Hearth: specimen in lab, results pending
    "O": "registered",  # Hearth: order detail only
    "S": "preliminary",  # Hearth: partial results
    "R": "preliminary",  # Hearth: results entered, not verified
    "N": "cancelled",  # Hearth: not asked (with dataAbsentReason not-asked, per the IG)
    "B": "amended",  # Hearth: appended report
    "V": "final",  # Hearth: verified
    "U": "final",  # Hearth: status changed to final without retransmitting results
}

# ResultStatus[Non-Queries] (table 0123) → diagnostic-report-status; Hearth's choices marked.
REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
    "A": "partial",  # Hearth: some, but not all, results available
    "M": "corrected",  # Hearth: corrected, not final
    "N": "registered",  # Hearth: procedure completed, results pending
}

# InterpretationCodes (table 0078) whose code is also a v3 ObservationInterpretation code.
V3_INTERPRETATION = frozenset(
    "< > A AA B D H HH HU HX I IE L LL LU LX MS N NCL NR POS NEG R S SDD SYN-R SYN-S U VS W "
    "IND E EX EXP CAR RR WR DET ND".split()
)

# Table 0203 identifier types Hearth names (display), for the common ones.
IDENTIFIER_TYPE = {
    "MR": "Medical record number",
    "PI": "Patient internal identifier",
    "PT": "Patient external identifier",
    "SS": "Social Security number",
    "SB": "Social Beneficiary Identifier",
    "NI": "National unique individual identifier",
    "NH": "National Health Plan Identifier",
    "DL": "Driver's license number",
    "PPN": "Passport number",
    "VN": "Visit number",
    "AN": "Account number",
    "PLAC": "Placer Identifier",
    "FILL": "Filler Identifier",
}

# NameType (table 0200) → HumanName.use
NAME_USE = {
    "L": "official",
    "D": "usual",
    "M": "maiden",
    "N": "nickname",
    "A": "nickname",
    "S": "anonymous",
    "B": "old",
}

# TelecommunicationUseCode (table 0201) → ContactPoint.use
TELECOM_USE = {
    "PRN": "home",
    "ORN": "home",
    "VHN": "home",
    "WPN": "work",
    "PRS": "mobile",
    "EMR": "temp",
    "ASN": "temp",
    "BPN": "work",
}
# TelecommunicationEquipmentType (table 0202) → ContactPoint.system
TELECOM_SYSTEM = {
    "PH": "phone",
    "CP": "phone",
    "SAT": "phone",
    "FX": "fax",
    "BP": "pager",
    "INTERNET": "email",
    "X.400": "email",
    "MD": "other",
    "TDD": "other",
    "TTY": "other",
}

# AddressType (table 0190) → Address.use / Address.type
ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "BI": "old"}
ADDRESS_TYPE = {"M": "postal", "SH": "physical"}

# Units Hearth recognises as UCUM codes when a message gives no coding system for OBX-6.
UCUM_UNITS = frozenset(
    "% /min /h 10*3/uL 10*6/uL 10*9/L 10*12/L Cel [degF] cm dL fL g g/dL g/L h IU/L IU/mL kg "
    "kg/m2 L m mL mg mg/dL mg/L min mm mm[Hg] mmol/L mol/L ng/mL nmol/L pg pg/mL s U/L u[IU]/mL "
    "ug/dL ug/L ug/mL umol/L mosm/kg [pH] mEq/L meq/L {beats}/min".split()
)
