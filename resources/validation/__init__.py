"""The one entry point of FHIR R4 (4.0.1) validation, the check every write goes through:
:func:`resource_body` settles a resource's type once, :func:`validate` runs the three checks
below once over a resource of settled type (:func:`validate_resource` is the two in a row), and
:func:`prepare` builds their tables ahead of use. The other modules of this package are its parts;
nothing outside the package calls them.

Three checks, each stating what it is the authority on, merged into one list of issues (one per
location, the first check's finding winning):

1. **Structure** (:mod:`resources.validation.structure`, spec json.html): known ``resourceType``,
   resource ``id`` syntax, unknown elements, empty objects/arrays/strings, misplaced ``null``,
   nested resources (``contained``, ``Bundle.entry.resource``, ``Parameters.parameter.resource``).
2. **R4 JSON Schema** (:mod:`resources.validation.schema`, :mod:`resources.validation.schema_issues`,
   spec json.html#schema): JSON types, primitive formats, required-binding codes, required
   complex elements. Applied to every resource, nested ones each with their own type; the
   arbiter of R4 validity.
3. **R4B model** (:mod:`resources.validation.r4b`): fhir.resources has R4B models only. They add
   required primitives, calendar-valid dates and one-value-per-choice, but R4B is not R4, so

   *the R4/R4B rule*: an R4B finding counts only where R4 and R4B define the element alike. It is
   dropped when it is about an unknown element (R4 decides which elements exist), when its
   location runs through an element R4 does not define or one listed in
   ``r4b.DIVERGENT`` (71 elements R4 has and R4B lacks, or the reverse, or whose type
   or cardinality changed; found by comparing every R4 definition with its R4B model, and a test
   repeats the comparison), and when it is a choice-element finding that does not hold for the
   R4 elements present. Types without an R4B model (18: the ten MedicinalProduct*,
   SubstanceNucleicAcid, -Polymer, -Protein, -ReferenceInformation, -SourceMaterial,
   -Specification, EffectEvidenceSynthesis, RiskEvidenceSynthesis) are judged by checks 1 and 2
   alone, also when nested. The model itself runs only where a quick walk over its field tables
   (:mod:`resources.validation.r4b_accepts`) cannot show that it would find nothing; the
   findings are the same, at a tenth of the cost for valid resources.

Not evaluated on every write: FHIRPath invariants (ele-1 beyond empty elements, dom-*, obs-*,
...), terminology bindings other than the required codes the schema lists, reference targets.

**Profiles** (:mod:`resources.validation.profiles`, spec profiling.html) are a fourth check, run
where a caller asks for it (``$validate`` with ``profile`` or ``meta.profile``; writes with
``HEARTH_ENFORCE_PROFILES``): :func:`validate_profile` walks a resource against one
StructureDefinition's snapshot, with the other StructureDefinitions and value-set membership
supplied by the caller (:class:`Sources`); :mod:`resources.validation.core` holds the R4 core
profiles and extension definitions shipped in ``resources/data`` (:func:`core_profiles`,
``CORE_FILES``). Profile invariants are evaluated there, with fhirpathpy.

Codes (IssueType): ``structure`` (unknown element, wrong JSON type, empty element, misplaced
null), ``required`` (missing mandatory element), ``value`` (bad primitive format, bad code),
``invalid`` (otherwise: unknown resource type, several values for one choice element).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from resources.errors import Issue
from resources.validation import r4b, r4b_accepts, schema_issues
from resources.validation.core import FILES as CORE_FILES
from resources.validation.core import base_definition_type, core_profiles
from resources.validation.profiles import Sources, nested_resources, validate_profile
from resources.validation.schema import expression, r4_resource_types, schema
from resources.validation.snapshot import SnapshotError, generate_snapshot
from resources.validation.structure import inspect

__all__ = [
    "CORE_FILES",
    "ResourceBody",
    "SnapshotError",
    "Sources",
    "base_definition_type",
    "core_profiles",
    "generate_snapshot",
    "is_resource_type",
    "nested_resources",
    "prepare",
    "resource_body",
    "resource_types",
    "validate",
    "validate_profile",
    "validate_resource",
]


def resource_types() -> frozenset[str]:
    """The 146 concrete FHIR R4 resource types."""
    return r4_resource_types()


def is_resource_type(name: str) -> bool:
    """Whether ``name`` is a concrete FHIR R4 resource type (``Patient``; not ``SubscriptionStatus``,
    which is R4B)."""
    return name in r4_resource_types()


@dataclass(frozen=True, slots=True)
class ResourceBody:
    """A resource whose type is settled: a JSON object whose ``resourceType`` is the concrete R4
    type ``type``. Built once where the body enters (:func:`resource_body`, or by a caller that
    has itself compared ``resourceType`` with an R4 type named in the URL) and passed down, so
    the repository and :func:`validate` take the type from it instead of checking it again."""

    type: str
    content: dict


def resource_body(resource: Any) -> ResourceBody | Issue:
    """``resource`` as a :class:`ResourceBody`, or the one issue that says why it is not one (not
    a JSON object, no ``resourceType``, not an R4 resource type): the one resourceType check."""
    if not isinstance(resource, dict):
        return Issue("structure", f"a resource is a JSON object, not {_kind(resource)}")
    kind = resource.get("resourceType")
    if kind is None:
        return Issue(
            "required",
            "resourceType: missing; every resource names its type",
            expression=("resourceType",),
        )
    if not isinstance(kind, str) or not is_resource_type(kind):
        return Issue(
            "invalid",
            f"resourceType: {kind!r} is not a FHIR R4 resource type",
            expression=("resourceType",),
        )
    return ResourceBody(kind, resource)


def validate_resource(resource: Any) -> list[Issue]:
    """Validate one resource (parsed JSON) as FHIR R4. Returns the issues (errors and warnings);
    no error-severity issue means valid. Never raises for bad content."""
    found = resource_body(resource)
    if isinstance(found, Issue):
        return [found]
    return validate(found)


def validate(body: ResourceBody) -> list[Issue]:
    """Validate a resource of settled type as FHIR R4: the one pass of the three checks (the
    module docstring), merged one issue per location. Never raises for bad content."""
    resource, kind = body.content, body.type
    r4 = schema()
    found = inspect(resource, kind, r4)
    issues = list(found.issues) + control_characters(resource, kind)
    issues += schema_issues.check(r4, resource, kind, kind, ())
    for nested in found.nested:
        at = _at(resource, nested.path)
        issues += schema_issues.check(r4, at, nested.type, kind, nested.path)
    if r4b.model(kind) is not None:
        masked = [n.path for n in found.nested if r4b.model(n.type) is None]
        issues += r4b.check(resource, kind, r4, masked + found.opaque)
    return _one_per_location(issues)


def compile_validator(res_type: str) -> None:
    """Compile the R4 JSON Schema validator of ``res_type`` now rather than at its first use."""
    schema().validator(res_type)


def prepare(res_type: str) -> None:
    """Build all that validating ``res_type`` needs (its compiled JSON Schema validator, the
    quick walk's tables over its R4B model) as first use would: a preforking server does this
    before it forks, so that its workers share them (``fhir_server.runtime.app.preload``)."""
    compile_validator(res_type)
    cls = r4b.model(res_type)
    if cls is not None:
        r4b_accepts.prepare(cls)


# R4 datatypes.html#string: no character below U+0020 except tab, carriage return and line feed.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def control_characters(resource: dict, kind: str) -> list[Issue]:
    """A ``value`` issue for each string (or property name) holding a control character other
    than tab, CR and LF. PostgreSQL cannot store NUL at all; the others are not FHIR. The walk is
    iterative, so no nesting depth makes it recurse."""
    issues: list[Issue] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(resource, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if _CONTROL.search(key):
                    issues.append(_control_issue(key, kind, path, "property name"))
                    continue
                stack.append((value, (*path, key)))
        elif isinstance(node, list):
            stack.extend((value, (*path, i)) for i, value in enumerate(node))
        elif isinstance(node, str) and (found := _CONTROL.search(node)):
            issues.append(_control_issue(found.group(), kind, path, "string"))
    return issues


def _control_issue(text: str, kind: str, path: tuple[str | int, ...], what: str) -> Issue:
    char = next(c for c in text if _CONTROL.match(c))
    where = expression(kind, path)
    return Issue(
        "value",
        f"{where}: a {what} contains the control character U+{ord(char):04X}; FHIR strings "
        "allow no character below U+0020 except tab, CR and LF",
        expression=(where,),
    )


def _at(resource: dict, path: tuple[str | int, ...]) -> Any:
    node: Any = resource
    for key in path:
        node = node[key]
    return node


def _one_per_location(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for issue in issues:
        if issue.expression and issue.expression in seen:
            continue
        seen.add(issue.expression)
        out.append(issue)
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"
