"""Compartment membership (FHIR R4 compartmentdefinition.html): which reference parameters of a
resource type put it in a Patient's (or an Encounter's) compartment, from the official
``compartmentdefinition-patient.json`` and ``compartmentdefinition-encounter.json`` (shipped in
``resources/data``; FHIR R4, CC0)."""

from __future__ import annotations

from functools import cache
from importlib import resources as importlib_resources

import orjson

DEFINITIONS = {
    "Patient": "compartmentdefinition-patient.json",
    "Encounter": "compartmentdefinition-encounter.json",  # Encounter/[id]/$everything
}


@cache
def _definition(comp_type: str) -> dict[str, tuple[str, ...]]:
    name = DEFINITIONS.get(comp_type)
    if name is None:
        return {}
    raw = (importlib_resources.files("resources") / "data" / name).read_bytes()
    return {r["code"]: tuple(r.get("param", ())) for r in orjson.loads(raw)["resource"]}


def compartment_types() -> frozenset[str]:
    return frozenset(DEFINITIONS)


def compartment_params(comp_type: str, res_type: str) -> tuple[str, ...]:
    """The search parameters linking ``res_type`` to a ``comp_type`` compartment ('{def}' means
    the compartment resource itself)."""
    return tuple(p for p in _definition(comp_type).get(res_type, ()) if p != "{def}")


@cache
def all_compartment_params(comp_type: str) -> tuple[tuple[str, str], ...]:
    """Every (resource type, search parameter) pair linking a type to a ``comp_type``
    compartment: the security filter of patient-context access."""
    return tuple(
        (res_type, p)
        for res_type, params in _definition(comp_type).items()
        for p in params
        if p != "{def}"
    )
