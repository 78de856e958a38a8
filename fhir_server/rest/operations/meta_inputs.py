"""The ``meta`` input of ``$meta-add`` and ``$meta-delete`` (R4 resource-operations.html), read
and checked once for both: a ``valueMeta`` whose ``tag`` and ``security`` are Codings with a
``code`` and whose ``profile`` are canonical URLs. Hearth's own security labels (the
``unverified-ai`` label that hides an AI result from its patient until a clinician verified
it: ``resources/search/visibility.py``) are the workflow's to set and remove, not a client's."""

from __future__ import annotations

from fhir_server.rest.context import FhirRequest
from resources.errors import Forbidden, Invalid
from resources.search.visibility import UNVERIFIED_AI


def meta_input(req: FhirRequest, operation: str) -> dict:
    given = req.params.complex("meta", "Meta")
    if given is None:
        raise Invalid(f"${operation}: the 'meta' input (valueMeta) is required")
    out: dict = {}
    for key in ("tag", "security"):
        codings = given.get(key, [])
        if not isinstance(codings, list):
            raise Invalid(f"${operation}: meta.{key} must be a list of Codings")
        for i, coding in enumerate(codings):
            where = f"meta.{key}[{i}]"
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                raise Invalid(f"${operation}: {where} must be a Coding with a code")
            if not coding["code"] or not isinstance(coding.get("system", ""), str):
                raise Invalid(f"${operation}: {where} must be a Coding with a code")
            if coding.get("system") == UNVERIFIED_AI["system"]:
                raise Forbidden(
                    f"${operation}: {where} is one of Hearth's own security labels, set and "
                    "removed by the workflow only"
                )
        if codings:
            out[key] = codings
    profiles = given.get("profile", [])
    if not isinstance(profiles, list) or not all(isinstance(p, str) and p for p in profiles):
        raise Invalid(f"${operation}: meta.profile must be a list of canonical URLs")
    if profiles:
        out["profile"] = profiles
    return out


def meta_parameters(meta: dict) -> dict:
    """The operations' output: Parameters with ``return`` (valueMeta)."""
    return {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}
