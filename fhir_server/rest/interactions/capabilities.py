"""capabilities — FHIR R4 http.html#capabilities: ``GET [base]/metadata``.

The CapabilityStatement is generated from what is implemented: the resource types the
validator knows, the interactions the router serves, the search parameters the search engine
indexes, and the operations registry. docs/conformance.md is generated from the same
constants (scripts/conformance.py).
"""

from __future__ import annotations

from fhir_server import __version__
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.registry import operations
from resources.validation import resource_types

TYPE_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
SYSTEM_INTERACTIONS = ["transaction", "batch", "history-system", "search-system"]
# What every resource type supports beyond its interactions (CapabilityStatement.rest.resource).
TYPE_CAPABILITIES: dict[str, object] = {
    "versioning": "versioned-update",
    "readHistory": True,
    "updateCreate": True,
    "conditionalCreate": True,
    "conditionalRead": "full-support",
    "conditionalUpdate": True,
    "conditionalDelete": "single",
}
FORMATS = ["application/fhir+json", "json", "application/fhir+xml", "xml"]
PATCH_FORMATS = ["application/json-patch+json", "application/fhir+json"]


def capability_statement(ctx: Context) -> dict:
    ops = operations()
    registry = ctx.repo.search.registry
    resources = []
    for res_type in sorted(resource_types()):
        entry: dict = {
            "type": res_type,
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            **TYPE_CAPABILITIES,
        }
        params = registry.for_type(res_type)
        if params:
            entry["searchParam"] = [
                {"name": p.code, "definition": p.url, "type": p.type}
                for p in sorted(params.values(), key=lambda p: p.code)
            ]
        type_ops = []
        for op in ops.values():
            if op.levels & {"type", "instance"} and (op.types is None or res_type in op.types):
                url = op.definition_for(res_type)
                type_ops.append({"name": op.name, "definition": url})
                # An OperationDefinition whose code is not the invoked name ($export's
                # patient-export, group-export) is listed by its code too: the Bulk Data
                # Tester finds Patient- and Group-level export only that way.
                if url.rsplit("/", 1)[-1] != op.name:
                    type_ops.append({"name": url.rsplit("/", 1)[-1], "definition": url})
        if type_ops:
            entry["operation"] = type_ops
        resources.append(entry)
    system_ops = [
        {"name": op.name, "definition": op.definition}
        for op in ops.values()
        if "system" in op.levels
    ]
    # An operation declared at system level whose types have OperationDefinitions of their own
    # ($export: patient-export, group-export) lists those here too, by their codes, as the
    # Bulk Data IG's CapabilityStatement and its clients (bdt) expect.
    system_ops += [
        {"name": url.rsplit("/", 1)[-1], "definition": url}
        for op in ops.values()
        if "system" in op.levels
        for _, url in op.definitions
        if url.rsplit("/", 1)[-1] != op.name
    ]
    rest: dict = {
        "mode": "server",
        "security": security(ctx.settings.base_url),
        "resource": resources,
        "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
    }
    if system_ops:
        rest["operation"] = system_ops
    statement: dict = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Hearth",
        "kind": "instance",
        "software": {"name": "Hearth", "version": __version__},
        "implementation": {"description": "Hearth FHIR server", "url": ctx.base},
        "fhirVersion": "4.0.1",
        "format": FORMATS,
        "patchFormat": PATCH_FORMATS,
        "rest": [rest],
    }
    instantiates = sorted({op.instantiates for op in ops.values() if op.instantiates})
    if instantiates:
        statement["instantiates"] = instantiates
    return statement


def security(root: str) -> dict:
    """rest.security: SMART-on-FHIR, with the ``oauth-uris`` extension (SMART App Launch 2.2
    conformance; the Python fhirclient finds the endpoints only here)."""
    uris = {
        "authorize": f"{root}/auth/authorize",
        "token": f"{root}/auth/token",
        "revoke": f"{root}/auth/revoke",
        "introspect": f"{root}/auth/introspect",
    }
    return {
        "cors": False,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": k, "valueUri": v} for k, v in uris.items()],
            }
        ],
    }


_cache: dict[tuple, dict] = {}


def capabilities(ctx: Context, req: FhirRequest) -> Reply:
    """Built once per search-registry generation (custom SearchParameters change it)."""
    registry = ctx.repo.search.registry
    key = (id(registry), getattr(registry, "generation", 0), ctx.base)
    if key not in _cache:
        _cache.clear()
        _cache[key] = capability_statement(ctx)
    return Reply(200, _cache[key])
