"""The profile validator (resources/validation/profiles.py) on small StructureDefinitions written
here, each rule with a case that breaks it and one that keeps it, and on the R4 core profiles
shipped with Hearth."""

from __future__ import annotations

import gzip
import json

from resources.validation import CORE_FILES, Sources, core_profiles, validate_profile

URL = "http://example.org/StructureDefinition/test"


def sd(*elements: dict, type_: str = "Patient", url: str = URL) -> dict:
    root = {"id": type_, "path": type_, "min": 0, "max": "*"}
    return {
        "resourceType": "StructureDefinition",
        "url": url,
        "type": type_,
        "kind": "resource",
        "derivation": "constraint",
        "snapshot": {"element": [root, *elements]},
    }


def el(el_id: str, lo: int = 0, hi: str = "*", *types: str, **more: object) -> dict:
    path = ".".join(part.split(":")[0] for part in el_id.split("."))
    out: dict = {"id": el_id, "path": path, "min": lo, "max": hi}
    if ":" in el_id.rsplit(".", 1)[-1]:
        out["sliceName"] = el_id.rsplit(":", 1)[1]
    if types:
        out["type"] = [{"code": t} for t in types]
    out.update(more)
    return out


def run(resource: dict, profile: dict, at: str | None = None, **sources: object) -> list:
    known = {profile["url"]: profile, **sources.pop("structures", {})}  # type: ignore[dict-item]
    return validate_profile(
        resource,
        profile,
        Sources(lambda u: known.get(u.split("|")[0]), sources.get("code_in")),  # type: ignore[arg-type]
        at,
    )


def errors(issues: list) -> list:
    return [i for i in issues if i.severity == "error"]


def test_cardinality_min_max_and_choice() -> None:
    profile = sd(
        el("Patient.name", 1, "1", "HumanName"),
        el("Patient.deceased[x]", 0, "1", "boolean"),
    )
    assert errors(run({"resourceType": "Patient", "name": [{"text": "a"}]}, profile)) == []
    missing = errors(run({"resourceType": "Patient"}, profile))
    assert [(i.code, i.expression) for i in missing] == [("required", ("Patient.name",))]
    two = errors(run({"resourceType": "Patient", "name": [{"text": "a"}, {"text": "b"}]}, profile))
    assert [(i.code, i.expression) for i in two] == [("structure", ("Patient.name",))]
    wrong_type = errors(
        run({"resourceType": "Patient", "name": [{}], "deceasedDateTime": "2020"}, profile)
    )
    assert [(i.code, i.expression) for i in wrong_type] == [
        ("structure", ("Patient.deceasedDateTime",))
    ]


def test_nested_elements_and_content_reference() -> None:
    profile = sd(
        el("Patient.contact", 0, "*", "BackboneElement"),
        el("Patient.contact.name", 1, "1", "HumanName"),
        el("Patient.link", 0, "*", contentReference="#Patient.contact"),
    )
    ok = {"resourceType": "Patient", "contact": [{"name": {"text": "a"}}], "link": [{"name": {}}]}
    assert errors(run(ok, profile)) == []
    bad = {"resourceType": "Patient", "contact": [{}, {"name": {"text": "b"}}], "link": [{}]}
    assert {i.expression for i in errors(run(bad, profile))} == {
        ("Patient.contact[0].name",),
        ("Patient.link[0].name",),
    }


def test_fixed_is_exact_and_pattern_is_contained() -> None:
    profile = sd(
        el("Patient.gender", 0, "1", "code", fixedCode="female"),
        el(
            "Patient.maritalStatus",
            0,
            "1",
            "CodeableConcept",
            patternCodeableConcept={"coding": [{"system": "urn:s", "code": "M"}]},
        ),
    )
    good = {
        "resourceType": "Patient",
        "gender": "female",
        "maritalStatus": {
            "coding": [{"system": "urn:s", "code": "M", "display": "x"}],
            "text": "t",
        },
    }
    assert errors(run(good, profile)) == []
    bad = {
        "resourceType": "Patient",
        "gender": "male",
        "maritalStatus": {"coding": [{"system": "urn:s", "code": "S"}]},
    }
    found = errors(run(bad, profile))
    assert {(i.code, i.expression) for i in found} == {
        ("value", ("Patient.gender",)),
        ("value", ("Patient.maritalStatus",)),
    }
    exact = sd(el("Patient.maritalStatus", 0, "1", fixedCodeableConcept={"text": "a"}))
    assert errors(run({"resourceType": "Patient", "maritalStatus": {"text": "a"}}, exact)) == []
    extra = {"resourceType": "Patient", "maritalStatus": {"text": "a", "coding": [{"code": "x"}]}}
    assert errors(run(extra, exact)), "fixed allows no more than the fixed value"


def _sliced(rules: str, discriminator: dict, *slices: dict) -> dict:
    return sd(
        el(
            "Patient.identifier",
            0,
            "*",
            "Identifier",
            slicing={"discriminator": [discriminator], "rules": rules},
        ),
        *slices,
    )


def test_slicing_by_value_with_slice_cardinality_and_closed_rules() -> None:
    slices = (
        el("Patient.identifier:mrn", 1, "1", "Identifier"),
        el("Patient.identifier:mrn.system", 1, "1", "uri", fixedUri="urn:mrn"),
        el("Patient.identifier:ssn", 0, "1", "Identifier"),
        el("Patient.identifier:ssn.system", 1, "1", "uri", fixedUri="urn:ssn"),
    )
    open_ = _sliced("open", {"type": "value", "path": "system"}, *slices)
    closed = _sliced("closed", {"type": "value", "path": "system"}, *slices)
    mrn = {"system": "urn:mrn", "value": "1"}
    other = {"system": "urn:other", "value": "2"}
    assert errors(run({"resourceType": "Patient", "identifier": [other, mrn]}, open_)) == []
    none = errors(run({"resourceType": "Patient", "identifier": [other]}, open_))
    assert [(i.code, i.expression) for i in none] == [("required", ("Patient.identifier",))]
    assert "slice 'mrn'" in none[0].diagnostics
    two = errors(run({"resourceType": "Patient", "identifier": [mrn, dict(mrn)]}, open_))
    assert [i.code for i in two] == ["structure"]
    stray = errors(run({"resourceType": "Patient", "identifier": [mrn, other]}, closed))
    assert [(i.code, i.expression) for i in stray] == [("structure", ("Patient.identifier[1]",))]


def test_ordered_and_open_at_end_slicing() -> None:
    slices = (
        el("Patient.identifier:mrn", 0, "*", "Identifier"),
        el("Patient.identifier:mrn.system", 1, "1", "uri", fixedUri="urn:mrn"),
        el("Patient.identifier:ssn", 0, "*", "Identifier"),
        el("Patient.identifier:ssn.system", 1, "1", "uri", fixedUri="urn:ssn"),
    )
    mrn, ssn = {"system": "urn:mrn", "value": "1"}, {"system": "urn:ssn", "value": "2"}
    other = {"system": "urn:other", "value": "3"}
    ordered = _sliced("open", {"type": "value", "path": "system"}, *slices)
    ordered["snapshot"]["element"][1]["slicing"]["ordered"] = True
    in_order = {"resourceType": "Patient", "identifier": [mrn, dict(mrn), other, ssn]}
    assert errors(run(in_order, ordered)) == []
    swapped = errors(run({"resourceType": "Patient", "identifier": [ssn, mrn]}, ordered))
    assert [(i.code, i.expression) for i in swapped] == [("structure", ("Patient.identifier[1]",))]
    assert "out of order" in swapped[0].diagnostics
    # unordered: any order
    unordered = _sliced("open", {"type": "value", "path": "system"}, *slices)
    assert errors(run({"resourceType": "Patient", "identifier": [ssn, mrn]}, unordered)) == []
    at_end = _sliced("openAtEnd", {"type": "value", "path": "system"}, *slices)
    assert errors(run({"resourceType": "Patient", "identifier": [ssn, mrn, other]}, at_end)) == []
    early = errors(run({"resourceType": "Patient", "identifier": [mrn, other, ssn]}, at_end))
    assert [(i.code, i.expression) for i in early] == [("structure", ("Patient.identifier[2]",))]
    assert "open at the end" in early[0].diagnostics


def test_reslicing() -> None:
    """A re-slice (``mrn/old``) divides the values of its slice: its cardinality counts among
    them, and the slice's own slicing (closed here) applies to them."""
    profile = _sliced(
        "open",
        {"type": "value", "path": "system"},
        el(
            "Patient.identifier:mrn",
            1,
            "*",
            "Identifier",
            slicing={"discriminator": [{"type": "value", "path": "use"}], "rules": "closed"},
        ),
        el("Patient.identifier:mrn.system", 1, "1", "uri", fixedUri="urn:mrn"),
        el("Patient.identifier:mrn/current", 1, "1", "Identifier"),
        el("Patient.identifier:mrn/current.use", 1, "1", "code", fixedCode="usual"),
        el("Patient.identifier:mrn/old", 0, "*", "Identifier"),
        el("Patient.identifier:mrn/old.use", 1, "1", "code", fixedCode="old"),
        el("Patient.identifier:mrn/old.period", 1, "1", "Period"),
    )
    usual = {"system": "urn:mrn", "use": "usual", "value": "1"}
    old = {"system": "urn:mrn", "use": "old", "value": "0", "period": {"end": "2020"}}
    other = {"system": "urn:other", "use": "official", "value": "9"}
    assert (
        errors(run({"resourceType": "Patient", "identifier": [old, usual, other]}, profile)) == []
    )
    # no current MRN: the re-slice's minimum; an old one without period: the re-slice's content
    no_current = {
        "resourceType": "Patient",
        "identifier": [{k: v for k, v in old.items() if k != "period"}],
    }
    found = errors(run(no_current, profile))
    assert {(i.code, i.expression) for i in found} == {
        ("required", ("Patient.identifier",)),
        ("required", ("Patient.identifier[0].period",)),
    }
    assert any("slice 'mrn/current'" in i.diagnostics for i in found)
    # an MRN that is neither current nor old: the slice mrn's closed re-slicing
    temp = {"system": "urn:mrn", "use": "temp", "value": "2"}
    found = errors(run({"resourceType": "Patient", "identifier": [usual, temp]}, profile))
    assert [(i.code, i.expression) for i in found] == [("structure", ("Patient.identifier[1]",))]
    # other identifiers are outside slice mrn: its closed re-slicing does not reach them
    assert errors(run({"resourceType": "Patient", "identifier": [usual, other]}, profile)) == []


def test_slicing_by_pattern_exists_and_type() -> None:
    by_pattern = _sliced(
        "open",
        {"type": "pattern", "path": "type"},
        el("Patient.identifier:mr", 1, "1", "Identifier"),
        el(
            "Patient.identifier:mr.type",
            1,
            "1",
            "CodeableConcept",
            patternCodeableConcept={"coding": [{"code": "MR"}]},
        ),
    )
    mr = {"type": {"coding": [{"system": "urn:v2", "code": "MR"}]}, "value": "1"}
    assert errors(run({"resourceType": "Patient", "identifier": [mr]}, by_pattern)) == []
    assert errors(run({"resourceType": "Patient", "identifier": [{"value": "1"}]}, by_pattern))
    by_exists = _sliced(
        "closed",
        {"type": "exists", "path": "period"},
        el("Patient.identifier:dated", 0, "*", "Identifier"),
        el("Patient.identifier:dated.period", 1, "1", "Period"),
    )
    dated = {"value": "1", "period": {"start": "2020"}}
    assert errors(run({"resourceType": "Patient", "identifier": [dated]}, by_exists)) == []
    assert errors(run({"resourceType": "Patient", "identifier": [{"value": "2"}]}, by_exists))
    by_type = sd(
        el(
            "Patient.deceased[x]",
            0,
            "1",
            "boolean",
            "dateTime",
            slicing={"discriminator": [{"type": "type", "path": "$this"}], "rules": "closed"},
        ),
        el("Patient.deceased[x]:deceasedBoolean", 0, "1", "boolean", fixedBoolean=True),
    )
    assert errors(run({"resourceType": "Patient", "deceasedBoolean": True}, by_type)) == []
    assert errors(run({"resourceType": "Patient", "deceasedBoolean": False}, by_type))
    stray = errors(run({"resourceType": "Patient", "deceasedDateTime": "2020"}, by_type))
    assert [i.expression for i in stray] == [("Patient.deceasedDateTime",)]


def test_slicing_by_profile_and_extension_definitions() -> None:
    ext_url = "http://example.org/StructureDefinition/ext-flag"
    ext = sd(
        el("Extension.url", 1, "1", "uri", fixedUri=ext_url),
        el("Extension.value[x]", 1, "1", "boolean"),
        type_="Extension",
        url=ext_url,
    )
    profile = sd(
        el(
            "Patient.extension",
            0,
            "*",
            "Extension",
            slicing={"discriminator": [{"type": "value", "path": "url"}], "rules": "open"},
        ),
        el("Patient.extension:flag", 1, "1", type=[{"code": "Extension", "profile": [ext_url]}]),
    )
    good = {"resourceType": "Patient", "extension": [{"url": ext_url, "valueBoolean": True}]}
    assert errors(run(good, profile, structures={ext_url: ext})) == []
    wrong = {"resourceType": "Patient", "extension": [{"url": ext_url, "valueString": "yes"}]}
    found = errors(run(wrong, profile, structures={ext_url: ext}))
    assert ("Patient.extension[0].valueString",) in {i.expression for i in found}, found
    missing = errors(run({"resourceType": "Patient"}, profile, structures={ext_url: ext}))
    assert [i.expression for i in missing] == [("Patient.extension",)]
    # unknown extension definition: not checked, said so
    unknown = run(wrong, profile)
    assert [i.severity for i in unknown] == ["information"], unknown

    contained_profile = "http://example.org/StructureDefinition/named-patient"
    named = sd(el("Patient.name", 1, "*", "HumanName"), url=contained_profile)
    bundle = sd(
        el(
            "Bundle.entry",
            0,
            "*",
            "BackboneElement",
            slicing={"discriminator": [{"type": "profile", "path": "resource"}], "rules": "closed"},
        ),
        el("Bundle.entry:patient", 0, "*", "BackboneElement"),
        el(
            "Bundle.entry:patient.resource",
            1,
            "1",
            type=[{"code": "Patient", "profile": [contained_profile]}],
        ),
        type_="Bundle",
    )
    ok = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "name": [{"text": "a"}]}}],
    }
    assert errors(run(ok, bundle, structures={contained_profile: named})) == []
    nameless = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient"}}],
    }
    found = errors(run(nameless, bundle, structures={contained_profile: named}))
    assert [i.expression for i in found] == [("Bundle.entry[0]",)]


def test_required_and_extensible_bindings() -> None:
    members = {("urn:g", "a"), ("urn:g", "b")}

    def code_in(vs: str, system: str | None, code: str) -> bool | None:
        if vs != "urn:vs":
            return None
        return any(c == code and (system is None or s == system) for s, c in members)

    profile = sd(
        el(
            "Patient.gender", 0, "1", "code", binding={"strength": "required", "valueSet": "urn:vs"}
        ),
        el(
            "Patient.maritalStatus",
            0,
            "1",
            "CodeableConcept",
            binding={"strength": "extensible", "valueSet": "urn:vs"},
        ),
        el(
            "Patient.language",
            0,
            "1",
            "code",
            binding={"strength": "required", "valueSet": "urn:unknown"},
        ),
    )
    good = {
        "resourceType": "Patient",
        "gender": "a",
        "maritalStatus": {
            "coding": [{"system": "urn:x", "code": "q"}, {"system": "urn:g", "code": "b"}]
        },
    }
    assert run(good, profile, code_in=code_in) == []
    bad = {
        "resourceType": "Patient",
        "gender": "z",
        "maritalStatus": {"coding": [{"system": "urn:x", "code": "q"}]},
        "language": "en",
    }
    found = run(bad, profile, code_in=code_in)
    assert {(i.severity, i.code, i.expression) for i in found} == {
        ("error", "code-invalid", ("Patient.gender",)),
        ("warning", "code-invalid", ("Patient.maritalStatus",)),
        ("information", "informational", ("Patient.language",)),
    }


def test_invariants_error_warning_and_not_evaluable() -> None:
    profile = sd(
        el(
            "Patient.name",
            0,
            "*",
            "HumanName",
            constraint=[
                {
                    "key": "t-1",
                    "severity": "error",
                    "human": "family or text",
                    "expression": "family.exists() or text.exists()",
                },
                {
                    "key": "t-2",
                    "severity": "warning",
                    "human": "a use",
                    "expression": "use.exists()",
                },
                {
                    "key": "t-3",
                    "severity": "error",
                    "human": "broken",
                    "expression": "nosuchfunction((",
                },
            ],
        ),
    )
    good = {"resourceType": "Patient", "name": [{"family": "X", "use": "official"}]}
    assert [i.severity for i in run(good, profile)] == ["information"]  # t-3 not evaluated
    bad = {"resourceType": "Patient", "name": [{"given": ["a"]}]}
    found = {(i.severity, i.code) for i in run(bad, profile)}
    assert found == {
        ("error", "invariant"),
        ("warning", "invariant"),
        ("information", "informational"),
    }


def test_a_profile_whose_snapshot_cannot_be_generated_is_refused_clearly() -> None:
    profile = sd()
    del profile["snapshot"]
    profile["baseDefinition"] = "http://example.org/StructureDefinition/unknown"
    profile["differential"] = {"element": [{"id": "Patient", "path": "Patient"}]}
    found = run({"resourceType": "Patient"}, profile)
    assert [i.code for i in found] == ["not-supported"]
    assert "http://example.org/StructureDefinition/unknown" in found[0].diagnostics


def test_a_differential_only_profile_is_validated_with_a_generated_snapshot() -> None:
    profile = sd()
    del profile["snapshot"]
    profile["baseDefinition"] = "http://hl7.org/fhir/StructureDefinition/Patient"
    profile["differential"] = {
        "element": [
            {"id": "Patient", "path": "Patient"},
            {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
            {"id": "Patient.name.family", "path": "Patient.name.family", "min": 1},
        ]
    }
    ok = {"resourceType": "Patient", "birthDate": "2000-01-01", "name": [{"family": "Li"}]}
    assert errors(run(ok, profile)) == []
    bad = {"resourceType": "Patient", "name": [{"given": ["Li"]}]}
    assert {(i.code, i.expression) for i in errors(run(bad, profile))} == {
        ("required", ("Patient.birthDate",)),
        ("required", ("Patient.name[0].family",)),
    }


def test_the_core_profiles_ship_with_snapshots() -> None:
    profiles = core_profiles()
    assert len(profiles) == 44
    assert all(p["snapshot"]["element"] for p in profiles)
    ids = {p["id"] for p in profiles}
    assert {"vitalsigns", "bp", "bodyweight", "heartrate", "bmi", "lipidprofile"} <= ids
    with gzip.open(CORE_FILES[1]) as fh:
        assert len(json.load(fh)["entry"]) == 393


def test_the_shipped_definitions_are_the_shared_ones() -> None:
    from tests.shared import shared_path

    for path in CORE_FILES:
        assert path.read_bytes() == shared_path("fhir", "r4-definitions", path.name).read_bytes()


def test_reference_targets_and_slices_without_discriminator() -> None:
    profile = sd(
        el(
            "Patient.generalPractitioner",
            0,
            "*",
            type=[
                {
                    "code": "Reference",
                    "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Practitioner"],
                }
            ],
        ),
        el("Patient.name", 0, "*", "HumanName", slicing={"rules": "closed"}),
        el("Patient.name:official", 0, "1", "HumanName"),
        el("Patient.name:official.use", 1, "1", "code", fixedCode="official"),
    )
    ok = {
        "resourceType": "Patient",
        "generalPractitioner": [{"reference": "Practitioner/1"}, {"reference": "#c"}],
        "name": [{"use": "official", "family": "X"}],
    }
    assert errors(run(ok, profile)) == []
    bad = {
        "resourceType": "Patient",
        "generalPractitioner": [{"reference": "http://x.org/fhir/Organization/2"}],
        "name": [{"use": "nickname"}],
    }
    found = errors(run(bad, profile))
    assert {(i.code, i.expression) for i in found} == {
        ("structure", ("Patient.generalPractitioner[0].reference",)),
        ("structure", ("Patient.name[0]",)),
    }, found


def test_a_binding_applies_to_the_coded_types_only() -> None:
    profile = sd(
        el(
            "Patient.deceased[x]",
            0,
            "1",
            "boolean",
            "dateTime",
            "string",
            "code",
            binding={"strength": "required", "valueSet": "urn:vs"},
        ),
    )

    def code_in(vs: str, system: str | None, code: str) -> bool | None:
        return code == "ok"

    assert (
        run({"resourceType": "Patient", "deceasedString": "anything"}, profile, code_in=code_in)
        == []
    )
    found = run({"resourceType": "Patient", "deceasedCode": "nope"}, profile, code_in=code_in)
    assert [(i.code, i.expression) for i in found] == [("code-invalid", ("Patient.deceasedCode",))]


def test_nested_resources_and_their_locations() -> None:
    from resources.validation import nested_resources

    inner = {"resourceType": "Patient", "id": "p"}
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Observation", "contained": [inner]}},
            {"request": {"method": "DELETE"}},
            {"resource": {"resourceType": "Bundle", "entry": [{"resource": inner}]}},
        ],
    }
    assert sorted(loc for loc, _ in nested_resources(bundle)) == [
        "Bundle.entry[0].resource",
        "Bundle.entry[0].resource.contained[0]",
        "Bundle.entry[2].resource",
        "Bundle.entry[2].resource.entry[0].resource",
    ]
    profile = sd(el("Patient.name", 1, "*", "HumanName"))
    found = run(inner, profile, at="Bundle.entry[2].resource.entry[0].resource")
    assert [i.expression for i in found] == [("Bundle.entry[2].resource.entry[0].resource.name",)]
    assert found[0].diagnostics.startswith("Bundle.entry[2].resource.entry[0].resource.name: ")
