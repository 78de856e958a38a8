"""How many of the resource types FHIR-Converter writes per message Hearth's HL7 v2 mapping writes
too, over the shared reference pairs (../shared/hl7v2/fhir-converter/PAIRS.tsv: a message and
the converter's expected bundle). The figure docs/hl7v2.md quotes ("925 of the 1,072 resource
types of any kind").

For each pair: the set of resource types in the converter's bundle, the set in the transaction
Bundle Hearth maps the message to (``mappings.hl7v2.map_parsed``, no server: what it would
write, the message's own record included), their intersection; summed over the pairs, for all
types and for the patient-compartment (clinical) types. A message Hearth does not accept counts
as writing nothing.

    PYTHONPATH=. .venv/bin/python scripts/hl7v2_converter_agreement.py [--shared DIR] [-v]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mappings import hl7v2  # noqa: E402

# The patient-compartment types the breadth test measures (tests/fhir_server/test_hl7v2_breadth.py).
CLINICAL = frozenset(
    (
        "Patient Encounter RelatedPerson AllergyIntolerance Condition Procedure Coverage "
        "Observation ServiceRequest DiagnosticReport Specimen Immunization MedicationRequest "
        "MedicationDispense DocumentReference Appointment ChargeItem Account"
    ).split()
)


def types_written(message: bytes) -> set[str]:
    try:
        mapped = hl7v2.map_parsed(hl7v2.parse(message), server_tz="+00:00")
    except hl7v2.Hl7Error:
        return set()
    return {
        e["resource"]["resourceType"]
        for e in mapped.bundle["entry"]
        if e["resource"].get("resourceType") != "Parameters"
    } | {
        e["request"]["url"].split("?")[0]  # a patched record (a move): written too
        for e in mapped.bundle["entry"]
        if e["request"]["method"] == "PATCH"
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per message")
    args = parser.parse_args()
    base = args.shared / "hl7v2" / "fhir-converter"
    with open(base / "PAIRS.tsv", encoding="utf-8") as f:
        pairs = list(csv.DictReader(f, delimiter="\t"))
    total = matched = clinical_total = clinical_matched = 0
    for pair in pairs:
        expected = json.loads((base / "expected" / pair["expected_json"]).read_text("utf-8-sig"))
        theirs = {e["resource"]["resourceType"] for e in expected["entry"]}
        ours = types_written((base / "messages" / pair["input_hl7"]).read_bytes())
        both = theirs & ours
        total += len(theirs)
        matched += len(both)
        clinical_total += len(theirs & CLINICAL)
        clinical_matched += len(both & CLINICAL)
        if args.verbose:
            missing = ", ".join(sorted(theirs - ours)) or "-"
            print(f"{pair['input_hl7']:<40} {len(both):>3}/{len(theirs):<3} missing: {missing}")
    print(f"pairs: {len(pairs)}")
    print(f"resource types of any kind: {matched} of {total} ({100 * matched / total:.0f} %)")
    print(
        f"patient-compartment types: {clinical_matched} of {clinical_total} "
        f"({100 * clinical_matched / clinical_total:.0f} %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
