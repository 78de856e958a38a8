"""Snapshot generation from a differential (resources/validation/snapshot.py, FHIR R4
profiling.html): rules on small differentials written here, the agreement with the published
snapshots of the R4 core profiles and extension definitions (snapshot removed, generated again,
compared element by element: scripts/snapshot_agreement.py), validation against a
differential-only profile, and the shipped base definitions against ``../shared``."""

from __future__ import annotations

import copy
import gzip
import json
import sys
from pathlib import Path

import pytest

from resources.validation import Sources, validate_profile
from resources.validation.core import BASE_FILE
from resources.validation.snapshot import SnapshotError, snapshot_elements
from tests.shared import shared_path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))
import build_base_definitions  # noqa: E402
import snapshot_agreement  # noqa: E402

CORE = "http://hl7.org/fhir/StructureDefinition/"
URL = "http://example.org/StructureDefinition/diff"


def profile(*diff: dict, base: str = CORE + "Patient", type_: str = "Patient") -> dict:
    return {
        "resourceType": "StructureDefinition",
        "url": URL,
        "type": type_,
        "kind": "resource",
        "derivation": "constraint",
        "baseDefinition": base,
        "differential": {"element": [{"id": type_, "path": type_}, *diff]},
    }


def by_id(elements: list[dict]) -> dict[str, dict]:
    return {e["id"]: e for e in elements}


def nothing(canonical: str) -> dict | None:
    return None


def test_cardinality_types_fixed_binding_and_constraints_are_merged() -> None:
    sd = profile(
        {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
        {"id": "Patient.gender", "path": "Patient.gender", "binding": {"strength": "required"}},
        {
            "id": "Patient.managingOrganization",
            "path": "Patient.managingOrganization",
            "type": [{"code": "Reference", "targetProfile": [CORE + "Organization"]}],
            "constraint": [{"key": "x-1", "severity": "error", "human": "h", "expression": "true"}],
        },
        {"id": "Patient.name.use", "path": "Patient.name.use", "fixedCode": "official"},
    )
    out = by_id(snapshot_elements(sd, nothing))
    assert out["Patient.birthDate"]["min"] == 1 and out["Patient.birthDate"]["max"] == "1"
    gender = out["Patient.gender"]["binding"]
    assert gender["strength"] == "required"
    assert gender["valueSet"].startswith("http://hl7.org/fhir/ValueSet/administrative-gender")
    org = out["Patient.managingOrganization"]
    assert {c["key"] for c in org["constraint"]} == {"ele-1", "x-1"}
    # Patient.name is a HumanName: its children come from the datatype, ids and paths prefixed
    assert out["Patient.name.use"]["fixedCode"] == "official"
    assert out["Patient.name.use"]["base"]["path"] == "HumanName.use"
    assert "Patient.name.family" in out and "Patient.name.period" in out
    # untouched elements are the base's
    assert out["Patient.active"]["min"] == 0


def test_slices_reslices_and_extension_slicing() -> None:
    sd = profile(
        {
            "id": "Patient.identifier",
            "path": "Patient.identifier",
            "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"},
        },
        {
            "id": "Patient.identifier:mrn",
            "path": "Patient.identifier",
            "sliceName": "mrn",
            "min": 1,
        },
        {
            "id": "Patient.identifier:mrn.system",
            "path": "Patient.identifier.system",
            "min": 1,
            "fixedUri": "urn:mrn",
        },
        {
            "id": "Patient.identifier:mrn/old",
            "path": "Patient.identifier",
            "sliceName": "mrn/old",
            "max": "1",
        },
        {"id": "Patient.identifier:ssn", "path": "Patient.identifier", "sliceName": "ssn"},
        {
            "id": "Patient.extension:race",
            "path": "Patient.extension",
            "sliceName": "race",
            "type": [{"code": "Extension", "profile": ["http://example.org/race"]}],
        },
    )
    elements = snapshot_elements(sd, nothing)
    ids = [e["id"] for e in elements]
    out = by_id(elements)
    mrn = ids.index("Patient.identifier:mrn")
    # the slice follows the sliced element (not expanded: nothing goes into it), its own
    # children (from the Identifier datatype) follow it, then its re-slice, then the next slice
    assert ids[mrn - 1] == "Patient.identifier"
    assert ids[mrn + 1] == "Patient.identifier:mrn.id"
    assert ids.index("Patient.identifier:mrn.system") < ids.index("Patient.identifier:mrn/old")
    assert ids.index("Patient.identifier:mrn/old") < ids.index("Patient.identifier:ssn")
    assert out["Patient.identifier:mrn"]["min"] == 1
    assert "slicing" not in out["Patient.identifier:mrn"]
    assert out["Patient.identifier:mrn.system"]["fixedUri"] == "urn:mrn"
    assert out["Patient.identifier:mrn/old"]["sliceName"] == "mrn/old"
    # a re-slice starts from its slice; a slice from the base's element, not from another slice
    assert out["Patient.identifier:mrn/old.system"]["fixedUri"] == "urn:mrn"
    assert ids.count("Patient.identifier:mrn/old.system") == 1
    assert out["Patient.identifier:ssn"]["min"] == 0
    assert out["Patient.extension"]["slicing"]["discriminator"] == [
        {"type": "value", "path": "url"}
    ]
    assert out["Patient.extension:race"]["type"][0]["profile"] == ["http://example.org/race"]


def test_a_renamed_choice_is_a_type_slice() -> None:
    sd = profile(
        {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity"},
        {
            "id": "Observation.valueQuantity.system",
            "path": "Observation.valueQuantity.system",
            "min": 1,
            "fixedUri": "http://unitsofmeasure.org",
        },
        base=CORE + "Observation",
        type_="Observation",
    )
    out = by_id(snapshot_elements(sd, nothing))
    choice = out["Observation.value[x]"]
    assert [t["code"] for t in choice["type"]] == ["Quantity"]
    assert choice["slicing"]["rules"] == "closed"
    assert out["Observation.value[x]:valueQuantity"]["sliceName"] == "valueQuantity"
    system = out["Observation.value[x]:valueQuantity.system"]
    assert system["path"] == "Observation.value[x].system"
    assert system["fixedUri"] == "http://unitsofmeasure.org" and system["min"] == 1


def test_what_cannot_be_generated_says_why() -> None:
    with pytest.raises(SnapshotError, match="not known here"):
        snapshot_elements(profile(base="http://example.org/nowhere"), nothing)
    with pytest.raises(SnapshotError, match="Patient.nothing"):
        snapshot_elements(profile({"id": "Patient.nothing", "path": "Patient.nothing"}), nothing)
    with pytest.raises(SnapshotError, match="2 types"):
        snapshot_elements(
            profile({"id": "Patient.deceased[x].id", "path": "Patient.deceased[x].id"}), nothing
        )


def test_agreement_with_the_published_r4_snapshots() -> None:
    """Every R4 core profile and extension definition with its snapshot removed, generated from
    its differential, compared with the published snapshot: path, min, max, types, fixed /
    pattern, binding strength of each element."""
    structure = snapshot_agreement.core_structure()
    core = snapshot_agreement.measure(
        snapshot_agreement.bundle(snapshot_agreement.PROFILES_FILE), structure
    )
    assert core.profiles == 44
    # picoelement's base, EvidenceVariable, is an R5 shape in the redistributed definitions
    assert [f.split(":")[0] + ":" + f.split(":")[1] for f in core.failed] == [CORE + "picoelement"]
    assert core.equal / core.elements >= 0.98, core.line("core")
    extensions = snapshot_agreement.measure(
        snapshot_agreement.bundle(snapshot_agreement.EXTENSIONS_FILE), structure
    )
    assert extensions.profiles == 393 and not extensions.failed
    assert extensions.equal == extensions.elements, extensions.diffs[:5]


def test_validation_against_a_differential_only_profile() -> None:
    structure = snapshot_agreement.core_structure()
    published = structure(CORE + "bodyweight")
    assert published is not None
    bare = {k: v for k, v in published.items() if k != "snapshot"}
    bare["url"] = URL
    known = {URL: bare}

    def find(canonical: str) -> dict | None:
        return known.get(canonical.split("|")[0]) or structure(canonical)

    sources = Sources(find)
    weight = json.loads(
        shared_path("fhir", "r4-examples", "observation-example.json").read_text("utf-8")
    )
    assert weight["code"]["coding"][0]["code"] == "29463-7"

    def found(resource: dict, sd: dict) -> set[tuple[str, tuple[str, ...]]]:
        return {
            (i.code, i.expression)
            for i in validate_profile(resource, sd, sources)
            if i.severity == "error"
        }

    assert found(weight, bare) == found(weight, published) == set()
    broken = copy.deepcopy(weight)
    broken["code"]["coding"] = [{"system": "http://loinc.org", "code": "8302-2"}]
    broken["valueQuantity"].pop("system")
    del broken["category"]
    want = found(broken, published)
    assert ("required", ("Observation.category",)) in want
    assert ("required", ("Observation.valueQuantity.system",)) in want
    assert found(broken, bare) == want


def test_the_base_definitions_are_built_from_shared() -> None:
    built = build_base_definitions.build(shared_path("fhir", "r4-definitions"))
    assert built == BASE_FILE.read_bytes()
    with gzip.open(BASE_FILE) as fh:
        sds = [e["resource"] for e in json.load(fh)["entry"]]
    urls = {sd["url"] for sd in sds}
    assert {CORE + "Patient", CORE + "Observation", CORE + "Coding", CORE + "Extension"} <= urls
    assert CORE + "EvidenceVariable" not in urls  # an R5 shape in the redistributed copy
    assert "medplum" not in json.dumps(sds)


def test_agreement_with_us_core_from_derived_differentials() -> None:
    """US Core 5.0.1 as ../shared has it (snapshots only): differentials derived from the
    snapshots, snapshots generated from them, compared with the published ones. Blood pressure
    cannot be generated: its base, us-core-vital-signs, is not among the eight."""
    us_core = snapshot_agreement.bundle(shared_path("fhir", "ig", snapshot_agreement.US_CORE.name))
    known = {sd["url"]: sd for sd in us_core}
    core = snapshot_agreement.core_structure()

    def structure(canonical: str) -> dict | None:
        return known.get(canonical.split("|")[0]) or core(canonical)

    tally = snapshot_agreement.measure(
        us_core, structure, lambda sd: snapshot_agreement.derived_differential(sd, structure)
    )
    assert tally.profiles == 8
    assert [f.split(": ")[0] for f in tally.failed] == [
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure"
    ]
    blood_pressure = len(known[tally.failed[0].split(": ")[0]]["snapshot"]["element"])
    assert tally.equal == tally.elements - blood_pressure, tally.diffs[:5]
    assert tally.extra == 0
