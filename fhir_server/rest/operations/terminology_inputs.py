"""What the terminology operations share: which CodeSystem / ValueSet / ConceptMap a call is
about (the instance, a canonical ``url`` with an optional version, or a resource sent inline),
and the code(s) it asks about (``code`` + ``system`` + ``display``, a ``coding`` or a
``codeableConcept``)."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest
from fhir_server.rest.operations.parameters import Parameters
from resources.errors import Invalid
from terminology import Terminology
from terminology.validate import Coded


def target(
    ctx: Context,
    req: FhirRequest,
    params: Parameters,
    service: Terminology,
    *,
    res_type: str,
    inline: str,
    version: str,
    required: bool = True,
) -> dict | None:
    """The instance (``[type]/[id]/$op``), else the resource sent as ``inline``, else the one
    whose canonical is ``url`` (version ``version``, or ``url|version``)."""
    if req.res_id is not None:
        res_id = req.res_id
        return ctx.repo.read(lambda u: u.read(res_type, res_id)).content
    given = params.resource(inline, res_type, validate=True)
    if given is not None:
        return given
    url = params.text("url")
    if url is None:
        if required:
            raise Invalid(
                f"${params.operation} at type level needs 'url' (a canonical) or '{inline}'"
            )
        return None
    return service.resolver.require(res_type, url, params.text(version))


def coded(params: Parameters, *, system_param: str | None = "system") -> list[Coded]:
    """The codes a call names: ``code`` (+ ``system``, ``display``), ``coding``, or each coding
    of ``codeableConcept``; exactly one of the three."""
    code, coding, concept = (
        params.text("code"),
        params.complex("coding"),
        params.complex("codeableConcept"),
    )
    if sum(x is not None for x in (code, coding, concept)) != 1:
        raise Invalid(f"${params.operation} needs exactly one of code, coding, codeableConcept")
    if code is not None:
        system = params.text(system_param) if system_param else None
        return [Coded(system, code, params.text("display"))]
    codings = [coding] if coding is not None else list((concept or {}).get("coding") or [])
    out = [
        Coded(_str(c.get("system")), c["code"], _str(c.get("display")))
        for c in codings
        if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"]
    ]
    if not out:
        raise Invalid(f"${params.operation}: the coding / codeableConcept carries no code")
    return out


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def coding_parts(params: Parameters, name: str) -> tuple[str, str | None] | None:
    """(code, system) of the Coding parameter ``name``, or None when it is not given."""
    coding = params.complex(name)
    if coding is None:
        return None
    code = _str(coding.get("code"))
    if code is None:
        raise Invalid(f"${params.operation}: {name} carries no code")
    return code, _str(coding.get("system"))
