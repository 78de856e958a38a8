"""Write docs/conformance.md: for each R4 interaction, search feature and operation, whether Hearth
supports it -- generated from the code, as the CapabilityStatement is, so the page cannot drift.

    python scripts/conformance.py            # fails (exit 1) while the page differs
    python scripts/conformance.py --write    # rewrites docs/conformance.md

Where it reads each answer:
- interactions, conditional interactions, formats: the constants the CapabilityStatement is
  built from (``fhir_server/rest/interactions/capabilities.py``);
- search-parameter types and their modifiers: those ``SEARCH_TYPES``
  (``resources/search/param_types.py``, the one table the indexer and the compiler dispatch on)
  declares, each compiled on a parameter of its type (a modifier declared but refused when
  compiled is not supported); prefixes: ``resources/search/parse.py``;
- the parameters for all resources, result parameters, chains, ``_has``, composites: each is
  compiled by the search engine as a client would send it, and is "supported" when the engine
  applies it (nothing comes back as unsupported: the same answer a search gives, refused under
  ``Prefer: handling=strict``);
- operations: the operations registry (``fhir_server/rest/operations/registry.py``), against
  the R4 core OperationDefinitions (``../shared/fhir/r4-definitions/profiles-resources.json.gz``).
tests/test_conformance_page.py fails while the committed page differs from what this writes.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.rest.interactions import capabilities  # noqa: E402
from fhir_server.rest.operations.registry import operations  # noqa: E402
from resources.errors import FhirError  # noqa: E402
from resources.search import SearchEngine  # noqa: E402
from resources.search import compiler as search_compiler  # noqa: E402
from resources.search import engine as search_engine  # noqa: E402
from resources.search.param_types import SEARCH_TYPES  # noqa: E402
from resources.search.parse import PREFIXES  # noqa: E402

DOC = ROOT / "docs" / "conformance.md"
R4_DEFINITIONS = ROOT.parent / "shared" / "fhir" / "r4-definitions" / "profiles-resources.json.gz"
YES, NO = "supported", "**not supported**"

# The R4 specification's lists (http.html, search.html), which the code is measured against.
R4_INTERACTIONS = [
    ("read", "instance"),
    ("vread", "instance"),
    ("update", "instance"),
    ("patch", "instance"),
    ("delete", "instance"),
    ("history-instance", "instance"),
    ("history-type", "type"),
    ("create", "type"),
    ("search-type", "type"),
    ("history-system", "system"),
    ("search-system", "system"),
    ("batch", "system"),
    ("transaction", "system"),
]
R4_MODIFIERS = {  # search.html#modifiers, by parameter type
    "string": ["missing", "exact", "contains"],
    "token": ["missing", "text", "not", "above", "below", "in", "not-in", "of-type"],
    "reference": ["missing", "[type]", "identifier", "above", "below"],
    "uri": ["missing", "above", "below"],
    "date": ["missing"],
    "number": ["missing"],
    "quantity": ["missing"],
    "composite": ["missing"],
    "special": ["missing"],
}
R4_PREFIXES = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]

# (feature, what a client sends: type or None for a system search, the query pairs)
Probe = tuple[str, str | None, list[tuple[str, str]]]
ALL_RESOURCES: list[Probe] = [  # search.html#all
    ("`_id`", "Patient", [("_id", "a")]),
    ("`_lastUpdated`", "Patient", [("_lastUpdated", "ge2020")]),
    ("`_tag`", "Patient", [("_tag", "http://example.org|a")]),
    ("`_profile`", "Patient", [("_profile", "http://example.org/StructureDefinition/a")]),
    ("`_security`", "Patient", [("_security", "http://example.org|a")]),
    ("`_source`", "Patient", [("_source", "http://example.org")]),
    ("`_text`", "Patient", [("_text", "a")]),
    ("`_content`", "Patient", [("_content", "a")]),
    ("`_list`", "Patient", [("_list", "a")]),
    ("`_list=$current-problems` (functional lists)", "Condition", [("_list", "$current-problems")]),
    ("`_has` (reverse chaining)", "Patient", [("_has:Observation:patient:code", "a")]),
    ("`_type` (system search)", None, [("_type", "Patient,Observation")]),
    ("`_query`", "Patient", [("_query", "a")]),
    ("`_filter`", "Patient", [("_filter", "name eq a")]),
]
FEATURES: list[Probe] = [
    ("chained parameters (`subject:Patient.name`)", "Observation", [("subject:Patient.name", "a")]),
    ("chains of several links", "Observation", [("subject:Patient.organization.name", "a")]),
    (
        "`_has` nested in `_has`",
        "Patient",
        [("_has:Observation:patient:_has:Provenance:target:agent", "a")],
    ),
    (
        "composite parameters (`code-value-quantity`)",
        "Observation",
        [("code-value-quantity", "a$5")],
    ),
    ("several values, OR (`a,b`)", "Patient", [("family", "a,b")]),
    ("repeated parameters, AND", "Patient", [("family", "a"), ("family", "b")]),
    ("`:missing`", "Patient", [("birthdate:missing", "true")]),
    ("`_id:not`", "Patient", [("_id:not", "a")]),
    ("`:[type]` on a reference", "Observation", [("subject:Patient", "a")]),
    ("`near` (Location, a special parameter)", "Location", [("near", "42.3|-71.1|10|km")]),
]
RESULT: list[Probe] = [  # search.html#return
    ("`_sort` (several keys, `-` descending)", "Patient", [("_sort", "family,-birthdate")]),
    ("`_count`", "Patient", [("_count", "10")]),
    ("`_count=0` (the total alone)", "Patient", [("_count", "0")]),
    ("`_include`", "Observation", [("_include", "Observation:subject")]),
    ("`_include=*`", "Observation", [("_include", "*")]),
    ("`_include:iterate`", "Observation", [("_include:iterate", "Observation:subject")]),
    ("`_revinclude`", "Patient", [("_revinclude", "Observation:subject")]),
    ("`_summary=true`", "Patient", [("_summary", "true")]),
    ("`_summary=text`", "Patient", [("_summary", "text")]),
    ("`_summary=data`", "Patient", [("_summary", "data")]),
    ("`_summary=count`", "Patient", [("_summary", "count")]),
    ("`_summary=false`", "Patient", [("_summary", "false")]),
    ("`_elements`", "Patient", [("_elements", "name,gender")]),
    ("`_total=none`", "Patient", [("_total", "none")]),
    ("`_total=estimate`", "Patient", [("_total", "estimate")]),
    ("`_total=accurate`", "Patient", [("_total", "accurate")]),
    ("`_contained=false`", "Patient", [("_contained", "false")]),
    ("`_contained=true`", "Patient", [("name", "a"), ("_contained", "true")]),
    ("`_contained=both`", "Patient", [("name", "a"), ("_contained", "both")]),
    ("`_contained=true` with no criterion", "Patient", [("_contained", "true")]),
    (
        "`_contained=true` with a chain",
        "Patient",
        [("organization.name", "a"), ("_contained", "true")],
    ),
    (
        "`_containedType=container`",
        "Patient",
        [("name", "a"), ("_contained", "true"), ("_containedType", "container")],
    ),
    (
        "`_containedType=contained`",
        "Patient",
        [("name", "a"), ("_contained", "true"), ("_containedType", "contained")],
    ),
]


# A parameter of each type, and a value, to ask the search engine about each modifier with.
MODIFIER_PROBES = {
    "string": ("Patient", "name", "a"),
    "token": ("Observation", "code", "http://loinc.org|1-8"),
    "reference": ("Observation", "subject", "Patient/a"),
    "uri": ("ValueSet", "url", "http://example.org/ValueSet/a"),
    "date": ("Patient", "birthdate", "2020"),
    "number": ("RiskAssessment", "probability", "0.5"),
    "quantity": ("Observation", "value-quantity", "5"),
    "composite": ("Observation", "code-value-quantity", "a$5"),
    "special": ("Location", "near", "42.3|-71.1|10|km"),
}
MODIFIER_VALUES = {
    "missing": "true",
    "in": "http://example.org/ValueSet/a",
    "not-in": "http://example.org/ValueSet/a",
}


class Terminology:
    """The terminology service the application plugs into the search engine, as a stand-in:
    the token modifiers that ask it compile as they do in a running Hearth."""

    def value_set_codes(self, url: str) -> list[tuple[str, str]]:
        return [("http://loinc.org", "1-8")]

    def hierarchy_codes(self, system: str, code: str, direction: str) -> list[str]:
        return [code]


# ``:of-type`` is for Identifier values (type system|type code|value)
OF_TYPE = ("Patient", "identifier", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|1")
# reference ``:above`` / ``:below`` are for hierarchical targets (Location.partOf)
HIERARCHY = ("Encounter", "location", "Location/a")


def modifier_applied(engine: SearchEngine, ptype: str, modifier: str) -> bool:
    res_type, code, value = OF_TYPE if modifier == "of-type" else MODIFIER_PROBES[ptype]
    if ptype == "reference" and modifier in ("above", "below"):
        res_type, code, value = HIERARCHY
    name = f"{code}:{'Patient' if modifier == '[type]' else modifier}"
    if modifier in ("[type]", "identifier"):
        value = "a"
    value = MODIFIER_VALUES.get(modifier, value)
    return applied(engine, res_type, [(name, value)]) == YES


def applied(engine: SearchEngine, res_type: str | None, query: Sequence[tuple[str, str]]) -> str:
    """Whether the search engine applies the query as sent: nothing comes back unsupported."""
    try:
        compiled = engine.compile(res_type, list(query))
        sort = compiled.result.sort
        if sort and res_type is not None:
            engine.sort_keys(res_type, sort)
    except FhirError as exc:  # NotSupported: a feature known but not implemented (always 4xx)
        return f"{NO} ({exc.diagnostics})"
    if compiled.unsupported:
        return f"{NO} ({compiled.unsupported[0].reason})"
    return YES


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out + [""]


def interactions() -> list[str]:
    served = set(capabilities.TYPE_INTERACTIONS) | set(capabilities.SYSTEM_INTERACTIONS)
    rows = [[f"`{code}`", level, YES if code in served else NO] for code, level in R4_INTERACTIONS]
    rows.append(["`capabilities` (`GET [base]/metadata`)", "system", YES])
    out = ["## Interactions (R4 http.html)", ""]
    out += table(["Interaction", "Level", "Hearth"], rows)
    flags = [[f"`{k}`", f"`{json.dumps(v)}`"] for k, v in capabilities.TYPE_CAPABILITIES.items()]
    out += ["Every resource type declares (CapabilityStatement.rest.resource):", ""]
    out += table(["Element", "Value"], flags)
    out += [
        "Formats: " + ", ".join(f"`{f}`" for f in capabilities.FORMATS) + ".",
        "Patch formats: " + ", ".join(f"`{f}`" for f in capabilities.PATCH_FORMATS) + ".",
        "",
    ]
    return out


def search(engine: SearchEngine) -> list[str]:
    out = ["## Search (R4 search.html)", "", "### Parameter types and their modifiers", ""]
    rows = []
    for ptype, spec_modifiers in R4_MODIFIERS.items():
        declared = SEARCH_TYPES[ptype]
        have = set(declared.modifiers) | ({"[type]"} if declared.type_modifiers else set())
        have = {m for m in have if modifier_applied(engine, ptype, m)}
        yes = [f"`:{m}`" for m in spec_modifiers if m in have]
        no = [f"`:{m}`" for m in spec_modifiers if m not in have]
        extra = sorted(f"`:{m}`" for m in have - set(spec_modifiers))
        rows.append(
            [
                f"`{ptype}`",
                YES if declared.index is not None else f"{YES} (not indexed)",
                ", ".join(yes) or "-",
                ", ".join(no) or "-",
                ", ".join(extra) or "-",
            ]
        )
    out += table(
        ["Type", "Indexed", "R4 modifiers supported", "R4 modifiers not supported", "Also"], rows
    )
    rows = [[f"`{p}`", YES if p in PREFIXES else NO] for p in R4_PREFIXES]
    out += ["### Prefixes (date, number, quantity)", ""]
    out += table(["Prefix", "Hearth"], rows)
    for title, probes in (
        ("### Parameters for all resources", ALL_RESOURCES),
        ("### Chains, `_has`, composites and combinations", FEATURES),
        ("### Result parameters", RESULT),
    ):
        out += [title, ""]
        out += table(
            ["Feature", "Example", "Hearth"],
            [
                [
                    name,
                    f"`{res_type or ''}?{'&'.join(f'{k}={v}' for k, v in query)}`",
                    applied(engine, res_type, query),
                ]
                for name, res_type, query in probes
            ],
        )
    out += [
        f"Chains and nested `_has` reach {search_compiler.MAX_CHAIN} links at most; "
        f"`_include:iterate` runs {search_engine.ITERATE_DEPTH} rounds and a page includes "
        f"{search_engine.INCLUDE_LIMIT:,} resources at most. Paging links: `self`, `first`, "
        "`previous`, `next`, `last` (keyset cursors). An unsupported parameter is a warning in "
        "the searchset's OperationOutcome entry (`search.mode = outcome`), or a 400 under "
        "`Prefer: handling=strict`; a feature Hearth knows but does not implement (`near`) is "
        "refused with an OperationOutcome of code `not-supported`.",
        "",
    ]
    return out


def r4_operations() -> list[tuple[str, list[str], str]]:
    """(code, resource types, url) of each R4 core OperationDefinition."""
    bundle = json.loads(gzip.decompress(R4_DEFINITIONS.read_bytes()))
    out = []
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "OperationDefinition":
            out.append((r["code"], sorted(r.get("resource", [])), r["url"]))
    return sorted(out)


def operations_section() -> list[str]:
    ops = operations()
    out = ["## Operations", "", "### R4 core operations (R4 operationslist.html)", ""]
    rows = []
    core_urls = set()
    for code, types, url in r4_operations():
        core_urls.add(url)
        op = ops.get(code)
        covered = op is not None and (
            op.types is None or all(t in op.types or t == "Resource" for t in types)
        )
        rows.append([f"`${code}`", ", ".join(types), YES if covered else NO])
    out += table(["Operation", "On", "Hearth"], rows)
    out += ["### Other operations Hearth implements", ""]
    rows = []
    for name, op in ops.items():
        urls = {op.definition, *(u for _, u in op.definitions)}
        if urls & core_urls:
            continue
        on = ", ".join(sorted(op.types)) if op.types is not None else "every type"
        levels = ", ".join(sorted(op.levels))
        rows.append([f"`${name}`", levels, on, op.definition])
    out += table(["Operation", "Levels", "On", "Definition"], rows)
    return out


def render() -> str:
    engine = SearchEngine(base_urls=("http://hearth.invalid/fhir",))
    engine.terminology = Terminology()
    lines = [
        "# FHIR R4 conformance",
        "",
        "<!-- Generated by scripts/conformance.py from the code; do not edit by hand. -->",
        "",
        "What Hearth supports of FHIR R4 (4.0.1), generated from the code as the "
        "CapabilityStatement (`GET [base]/metadata`) is: the interactions the router serves, the "
        "search engine asked about each search feature as a client would send it, and the "
        "operations registry measured against the R4 core OperationDefinitions. "
        "`python scripts/conformance.py --write` regenerates it; tests/test_conformance_page.py "
        "fails while it differs. How each feature behaves is in docs/search.md, "
        "docs/fhir-xml.md and docs/bulk-export.md.",
        "",
    ]
    lines += interactions() + search(engine) + operations_section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str]) -> int:
    text = render()
    if "--write" in argv:
        DOC.write_text(text)
        return 0
    if not DOC.exists() or DOC.read_text() != text:
        print(
            f"{DOC.relative_to(ROOT)} differs from the code: run python scripts/conformance.py --write"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
