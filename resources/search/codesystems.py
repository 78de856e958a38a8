"""Implicit code systems of ``code`` elements (FHIR R4 search.html#token: "code: the system is
defined in the value set", datatypes.html#code).

A ``code`` element with a required binding to a value set that draws on exactly one code system
has that system implicitly (``Patient.gender`` → ``http://hl7.org/fhir/administrative-gender``),
so ``gender=http://hl7.org/fhir/administrative-gender|male`` finds ``"gender": "male"``.
``data/code-systems.json`` maps element paths to those systems; ``derive`` rebuilds it from the
R4 StructureDefinitions and ValueSets (the test suite checks that the shipped file matches).
"""

from __future__ import annotations

from functools import cache
from importlib import resources as importlib_resources

import orjson


def derive(structure_definitions: list[dict], value_sets: list[dict]) -> dict[str, str]:
    """element path → system, for required-bound ``code`` elements of resources and data types
    whose value set includes exactly one code system (and no other value set)."""
    vs_system: dict[str, str] = {}
    for vs in value_sets:
        if vs.get("resourceType") != "ValueSet":
            continue
        include = (vs.get("compose") or {}).get("include") or []
        systems = {i.get("system") for i in include}
        if (
            len(systems) == 1
            and None not in systems
            and not any(i.get("valueSet") for i in include)
        ):
            vs_system[vs["url"]] = systems.pop()  # type: ignore[assignment]
    out: dict[str, str] = {}
    for sd in structure_definitions:
        if sd.get("resourceType") != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        for el in (sd.get("snapshot") or {}).get("element") or ():
            types = [t.get("code") for t in el.get("type") or ()]
            binding = el.get("binding") or {}
            if types != ["code"] or binding.get("strength") != "required":
                continue
            system = vs_system.get(str(binding.get("valueSet", "")).split("|", 1)[0])
            if system:
                out[el["path"]] = system
    return dict(sorted(out.items()))


@cache
def implicit_systems() -> dict[str, str]:
    """The shipped map (read once)."""
    ref = importlib_resources.files("resources.search") / "data" / "code-systems.json"
    return orjson.loads(ref.read_bytes())["systems"]
