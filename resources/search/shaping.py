"""Subsetting resources for ``_summary`` and ``_elements`` (FHIR R4 search.html#summary,
search.html#elements).

A subsetted resource carries the ``SUBSETTED`` tag
(http://terminology.hl7.org/CodeSystem/v3-ObservationValue) as the spec requires. Which elements
are summary elements comes from the ``isSummary`` flags carried by fhir.resources' models; for
the R4-only types that have no model the whole resource is returned.
"""

from __future__ import annotations

from functools import cache

from resources.errors import Invalid

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
ALWAYS = ("resourceType", "id", "meta")
SUMMARY_MODES = ("true", "false", "text", "data", "count")


@cache
def summary_elements(res_type: str) -> frozenset[str] | None:
    """JSON names of the summary elements of ``res_type`` (choice types expanded), or None."""
    try:
        from fhir.resources.R4B import get_fhir_model_class

        model = get_fhir_model_class(res_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None
    names = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra or {}
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            names.add(field.alias or name)
    return frozenset(names)


@cache
def _fields(res_type: str) -> tuple[tuple[str, dict, bool], ...]:
    """(JSON name, the model's element flags, required) for each element of ``res_type``."""
    try:
        from fhir.resources.R4B import get_fhir_model_class

        model = get_fhir_model_class(res_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return ()
    out = []
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        out.append(
            (field.alias or name, extra if isinstance(extra, dict) else {}, field.is_required())
        )
    return tuple(out)


@cache
def mandatory_elements(res_type: str) -> frozenset[str]:
    """The top-level elements of minimum cardinality 1: primitives (``status``), complex ones
    (``Observation.code``) and choices (``MedicationRequest.medication[x]``, each JSON name)."""
    return frozenset(
        name
        for name, extra, required in _fields(res_type)
        if required or extra.get("element_required") or extra.get("one_of_many_required")
    )


@cache
def choice_names(res_type: str) -> dict[str, frozenset[str]]:
    """A choice element's name (``value`` for ``value[x]``) -> its JSON names."""
    out: dict[str, set[str]] = {}
    for name, extra, _ in _fields(res_type):
        if extra.get("one_of_many"):
            out.setdefault(extra["one_of_many"], set()).add(name)
    return {k: frozenset(v) for k, v in out.items()}


def _tagged(resource: dict, kept: dict) -> dict:
    meta = dict(kept.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    kept["meta"] = meta
    return kept


def summarize(resource: dict, mode: str) -> dict:
    """Apply ``_summary=mode`` to one resource."""
    if mode not in SUMMARY_MODES:
        raise Invalid(f"_summary must be one of {', '.join(SUMMARY_MODES)}, not {mode!r}")
    if mode == "false":
        return resource
    res_type = resource["resourceType"]
    if mode == "data":
        return _tagged(resource, {k: v for k, v in resource.items() if k != "text"})
    if mode == "text":
        keep = {*ALWAYS, "text", *mandatory_elements(res_type)}
        return _tagged(resource, {k: v for k, v in resource.items() if k in keep})
    wanted = summary_elements(res_type)
    if wanted is None:
        return resource
    keep = {*ALWAYS, *wanted}
    return _tagged(
        resource, {k: v for k, v in resource.items() if k in keep or k.lstrip("_") in keep}
    )


def select_elements(resource: dict, elements: list[str]) -> dict:
    """Apply ``_elements=a,b`` to one resource (top-level elements plus the mandatory ones); a
    choice element by its name (``value``, ``value[x]``) or one of its JSON names."""
    res_type = resource["resourceType"]
    keep = {*ALWAYS, *mandatory_elements(res_type)}
    for e in elements:
        e = e.strip()
        if e.startswith(res_type + "."):
            e = e[len(res_type) + 1 :]
        name = e.split(".")[0].removesuffix("[x]")
        keep.add(name)
        keep.update(choice_names(res_type).get(name, ()))  # value -> valueQuantity, ...
    return _tagged(
        resource, {k: v for k, v in resource.items() if k in keep or k.lstrip("_") in keep}
    )


def shape_read(resource: dict | None, query: list[tuple[str, str]]) -> dict | None:
    """``_summary`` / ``_elements`` on a read or vread (R4 search.html#summary says they apply
    to read as to search): the resource subsetted, as a search would; ``_summary=count`` has no
    meaning for one resource (400). With both, ``_summary`` applies."""
    if resource is None:
        return None
    summary = [v for k, v in query if k == "_summary"]
    elements = [e for k, v in query if k == "_elements" for e in v.split(",") if e.strip()]
    if len(summary) > 1:
        raise Invalid("_summary is given more than once")
    if summary:
        if summary[0] == "count":
            raise Invalid("_summary=count applies to searches, not to a read")
        return summarize(resource, summary[0])
    if elements:
        return select_elements(resource, elements)
    return resource
