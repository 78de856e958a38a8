"""Check 3 of :mod:`resources.validation`: the findings of the FHIR R4B (4.3.0) models of
fhir.resources, kept only where R4B says what R4 says.

fhir.resources 8 ships R4B models, not R4 ones. They check what the R4 JSON Schema cannot: a
required primitive (``Observation.status``), a real calendar date (``2020-02-30``), one value
for a choice element (``deceasedBoolean`` *and* ``deceasedDateTime``). R4B changed some of R4,
so a finding counts only where R4 and R4B define the element alike. A finding is dropped when

1. it is about an unknown element: which elements exist is R4's to say, and
   :mod:`resources.validation.structure` says it from the R4 schema;
2. its location runs through an element R4 does not define (an R4B addition such as
   ``Evidence.variableDefinition``), or through one listed in :data:`DIVERGENT` (R4 and R4B
   differ in name, type or cardinality; the R4 schema, already applied, is the verdict there);
3. it is about a choice element and does not hold in R4: "several values" stands only when two
   or more of the values present are R4 elements; "missing" is dropped for a choice whose R4
   types differ from R4B's (``Extension.value[x]``: R4 has valueMeta, which R4B cannot see).

:data:`DIVERGENT` was found by comparing every R4 definition with its R4B model, element by
element; ``tests/resources/validation/test_validation.py`` repeats the comparison, so the table cannot
drift from the installed models. The 18 R4 types without an R4B model (MedicinalProduct*,
Substance{NucleicAcid, Polymer, Protein, ReferenceInformation, SourceMaterial, Specification},
EffectEvidenceSynthesis, RiskEvidenceSynthesis) are judged by the R4 schema alone, and so are
nested resources of those types (they are masked from the R4B model of their container).

The model runs only where :func:`resources.validation.r4b_accepts.accepts` cannot show that it
would raise nothing (it shows that for every valid resource of the official examples and
Synthea, about four times faster than the model); where it runs, its findings are the verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import pydantic
from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic_core import ErrorDetails

from resources.errors import Issue
from resources.validation.r4b_accepts import accepts
from resources.validation.schema import ElementSpec, R4Schema, expression
from resources.validation.schema_issues import shown

Path = tuple[str | int, ...]

# (R4 JSON Schema definition, element) -> how R4B differs from R4 there ("not in R4B": an R4
# element R4B lacks; "not in R4": an R4B element R4 lacks, e.g. Extension.valueCodeableReference).
DIVERGENT: dict[tuple[str, str], str] = {
    ("ActivityDefinition", "subjectCanonical"): "not in R4",
    ("DataRequirement_CodeFilter", "modifierExtension"): "not in R4B",
    ("DataRequirement_DateFilter", "modifierExtension"): "not in R4B",
    ("DataRequirement_Sort", "modifierExtension"): "not in R4B",
    ("Dosage_DoseAndRate", "modifierExtension"): "not in R4B",
    ("ElementDefinition", "defaultValueCodeableReference"): "not in R4",
    ("ElementDefinition", "defaultValueMeta"): "not in R4B",
    ("ElementDefinition", "defaultValueRatioRange"): "not in R4",
    ("ElementDefinition", "fixedCodeableReference"): "not in R4",
    ("ElementDefinition", "fixedMeta"): "not in R4B",
    ("ElementDefinition", "fixedRatioRange"): "not in R4",
    ("ElementDefinition", "patternCodeableReference"): "not in R4",
    ("ElementDefinition", "patternMeta"): "not in R4B",
    ("ElementDefinition", "patternRatioRange"): "not in R4",
    ("ElementDefinition_Base", "modifierExtension"): "not in R4B",
    ("ElementDefinition_Binding", "modifierExtension"): "not in R4B",
    ("ElementDefinition_Constraint", "modifierExtension"): "not in R4B",
    ("ElementDefinition_Discriminator", "modifierExtension"): "not in R4B",
    ("ElementDefinition_Example", "modifierExtension"): "not in R4B",
    ("ElementDefinition_Example", "valueCodeableReference"): "not in R4",
    ("ElementDefinition_Example", "valueMeta"): "not in R4B",
    ("ElementDefinition_Example", "valueRatioRange"): "not in R4",
    ("ElementDefinition_Mapping", "modifierExtension"): "not in R4B",
    ("ElementDefinition_Slicing", "modifierExtension"): "not in R4B",
    ("ElementDefinition_Type", "modifierExtension"): "not in R4B",
    ("Evidence", "assertion"): "not in R4",
    ("Evidence", "certainty"): "not in R4",
    ("Evidence", "citeAsMarkdown"): "not in R4",
    ("Evidence", "citeAsReference"): "not in R4",
    ("Evidence", "copyright"): "not in R4B",
    ("Evidence", "effectivePeriod"): "not in R4B",
    ("Evidence", "exposureBackground"): "not in R4B",
    ("Evidence", "exposureVariant"): "not in R4B",
    ("Evidence", "jurisdiction"): "not in R4B",
    ("Evidence", "name"): "not in R4B",
    ("Evidence", "outcome"): "not in R4B",
    ("Evidence", "shortTitle"): "not in R4B",
    ("Evidence", "statistic"): "not in R4",
    ("Evidence", "studyType"): "not in R4",
    ("Evidence", "subtitle"): "not in R4B",
    ("Evidence", "synthesisType"): "not in R4",
    ("Evidence", "topic"): "not in R4B",
    ("Evidence", "variableDefinition"): "not in R4",
    ("EvidenceVariable", "actual"): "not in R4",
    ("EvidenceVariable", "approvalDate"): "not in R4B",
    ("EvidenceVariable", "category"): "not in R4",
    ("EvidenceVariable", "characteristic"): "cardinality differs: R4 1.., R4B 0..",
    ("EvidenceVariable", "characteristicCombination"): "not in R4",
    ("EvidenceVariable", "copyright"): "not in R4B",
    ("EvidenceVariable", "effectivePeriod"): "not in R4B",
    ("EvidenceVariable", "handling"): "not in R4",
    ("EvidenceVariable", "jurisdiction"): "not in R4B",
    ("EvidenceVariable", "lastReviewDate"): "not in R4B",
    ("EvidenceVariable", "topic"): "not in R4B",
    ("EvidenceVariable", "type"): "not in R4B",
    ("EvidenceVariable_Characteristic", "definitionDataRequirement"): "not in R4B",
    ("EvidenceVariable_Characteristic", "definitionTriggerDefinition"): "not in R4B",
    ("EvidenceVariable_Characteristic", "device"): "not in R4",
    ("EvidenceVariable_Characteristic", "method"): "not in R4",
    ("EvidenceVariable_Characteristic", "participantEffectiveDateTime"): "not in R4B",
    ("EvidenceVariable_Characteristic", "participantEffectiveDuration"): "not in R4B",
    ("EvidenceVariable_Characteristic", "participantEffectivePeriod"): "not in R4B",
    ("EvidenceVariable_Characteristic", "participantEffectiveTiming"): "not in R4B",
    (
        "EvidenceVariable_Characteristic",
        "timeFromStart",
    ): "type differs: R4 Duration, R4B EvidenceVariableCharacteristicTimeFromStart",
    ("EvidenceVariable_Characteristic", "usageContext"): "not in R4B",
    ("Extension", "valueCodeableReference"): "not in R4",
    ("Extension", "valueMeta"): "not in R4B",
    ("Extension", "valueRatioRange"): "not in R4",
    ("PlanDefinition", "subjectCanonical"): "not in R4",
    ("PlanDefinition_Action", "subjectCanonical"): "not in R4",
    ("Timing_Repeat", "modifierExtension"): "not in R4B",
}

# What stands in for a nested resource the R4B models do not know: a valid R4B resource.
_MASK = {"resourceType": "Basic", "code": {"text": "masked: validated by the R4 JSON Schema"}}
_CHOICE_LIST = re.compile(r"\[([^\]]*)\]")
_VALUE = ("date", "time", "greater_than", "less_than", "string_too", "too_", "decimal_")


@cache
def model(type_name: str) -> type[FHIRAbstractModel] | None:
    """The R4B model of an R4 resource type, or None where R4B has no such type."""
    try:
        return get_fhir_model_class(type_name)
    except ValueError:
        return None


def check(resource: dict, root: str, schema: R4Schema, masked: Iterable[Path]) -> list[Issue]:
    """The R4B model's findings on ``resource`` (an R4 ``root`` with an R4B model) that hold in R4.

    ``masked``: paths of nested resources the R4B models cannot judge (replaced before validation).
    """
    cls = model(root)
    if cls is None:
        raise ValueError(f"{root} has no R4B model")
    masked = list(masked)
    if not masked and accepts(cls, resource):
        return []  # the model would raise nothing: no need to run it
    data = _masked(resource, masked)
    try:
        cls.model_validate(data)
    except pydantic.ValidationError as failed:
        errors = failed.errors(include_url=False, include_context=False)
    except (KeyError, TypeError, ValueError, AttributeError) as crashed:
        # fhir.resources fails this way only on content already broken elsewhere (an unknown
        # nested resource type, a non-object where a resource belongs); say so once.
        where = expression(root, ())
        return [
            Issue(
                "invalid",
                f"{where}: content the R4B model cannot process ({type(crashed).__name__})",
                expression=(where,),
            )
        ]
    else:
        return []
    issues = []
    for error in errors:
        issue = _issue(error, resource, root, schema)
        if issue is not None:
            issues.append(issue)
    return issues


def _issue(error: ErrorDetails, resource: dict, root: str, schema: R4Schema) -> Issue | None:
    kind: str = error["type"]
    if kind == "extra_forbidden":
        return None  # rule 1
    loc: Path = tuple(error["loc"])
    message: str = error["msg"].removeprefix("Value error, ")
    holds, spec = _in_r4(schema, root, resource, loc)
    if not holds:
        return None  # rule 2
    choice = _choice_names(message) if kind == "value_error" else None
    if choice is not None:
        return _choice_issue(choice, "but got multiple" in message, resource, root, loc, schema)
    where = expression(root, loc)
    code = _code(kind)
    if code == "required":
        return Issue(code, f"{where}: required element is missing", expression=(where,))
    found = error.get("input")
    quoted = "the value" if isinstance(found, dict | list) else shown(found)
    fhir_type = f"FHIR {spec.type}" if spec is not None else "value"
    if code == "structure":
        return Issue(
            code,
            f"{where}: {quoted} has the wrong JSON type for a {fhir_type} ({_reason(message)})",
            expression=(where,),
        )
    if code == "value":
        return Issue(
            code,
            f"{where}: {quoted} is not a valid {fhir_type} ({_reason(message)})",
            expression=(where,),
        )
    return Issue(code, f"{where}: {message}", expression=(where,))


def _choice_issue(
    names: list[str], several: bool, resource: dict, root: str, loc: Path, schema: R4Schema
) -> Issue | None:
    """A finding about a choice element (rule 3), judged on the R4 elements present."""
    landing = schema.target(root, resource, loc)
    if landing is None:
        return None
    definition, node = landing
    group = _choice_group(names, schema)
    where = expression(root, loc + (f"{group}[x]",))
    if several:
        elements = schema.elements(definition)
        present = [n for n in names if isinstance(node, dict) and n in node and n in elements]
        if len(present) < 2:
            return None
        text = f"a choice element takes one value; found {', '.join(present)}"
        return Issue("invalid", f"{where}: {text}", expression=(where,))
    if _choice_differs(definition, group):
        return None  # R4 offers types R4B lacks; the value may be one of those
    allowed = ", ".join(n for n in names if n in schema.elements(definition))
    text = f"required element is missing (one of {allowed})"
    return Issue("required", f"{where}: {text}", expression=(where,))


def _code(kind: str) -> str:
    """The IssueType of a pydantic error type."""
    if kind.endswith("missing"):
        return "required"
    if kind in ("value_error", "string_pattern_mismatch") or kind.startswith(_VALUE):
        return "value"
    if kind.endswith(("_type", "_parsing", "_from_float")) or kind == "json_invalid":
        return "structure"
    return "invalid"


def _in_r4(
    schema: R4Schema, root: str, resource: dict, loc: Sequence[str | int]
) -> tuple[bool, ElementSpec | None]:
    """Whether ``loc`` runs only through elements R4 defines as R4B does; and the R4 spec of the
    element it ends at."""
    spec = None
    for step in schema.steps(root, resource, loc):
        if step.spec is None:
            return False, None
        if _divergent(step.definition, step.key):
            return False, None
        spec = step.spec
    return True, spec


def _choice_differs(definition: str, group: str) -> bool:
    """Whether R4 and R4B offer different types for the choice element ``group[x]``."""
    return any(
        d == definition and k.startswith(group) and k[len(group) : len(group) + 1].isupper()
        for d, k in DIVERGENT
    )


def _divergent(definition: str, key: str) -> bool:
    """Whether R4 and R4B define this element apart."""
    return (definition, key) in DIVERGENT


def _reason(message: str) -> str:
    """pydantic's explanation without its generic lead ("Input should be a valid date, ...")."""
    head, _, rest = message.partition(", ")
    return rest if head.startswith("Input should be") and rest else message


def _choice_names(message: str) -> list[str] | None:
    """The element names of a fhir.resources "one of many" finding, or None for other findings."""
    if "field value" not in message:
        return None
    match = _CHOICE_LIST.search(message)
    if match is None:
        return None
    names = [name.strip().strip("'\"") for name in match.group(1).split(",")]
    return [name for name in names if name] or None


def _choice_group(names: Sequence[str], schema: R4Schema) -> str:
    """The choice element the names belong to: ``deceased`` for deceasedBoolean, deceasedDateTime
    (the shortest prefix, split at a capital, that leaves an R4 or R4B type name in every name)."""
    first = names[0]
    for index in range(1, len(first)):
        prefix = first[:index]
        if first[index].isupper() and all(
            name.startswith(prefix) and _is_type(name[index:], schema) for name in names
        ):
            return prefix
    return first


def _is_type(name: str, schema: R4Schema) -> bool:
    return schema.is_type_name(name) or hasattr(fhirtypes, f"{name}Type")


def _masked(resource: dict, paths: Iterable[Path]) -> dict:
    """A copy of ``resource`` with the nested resources at ``paths`` replaced by a stand-in; only
    the containers on those paths are copied."""
    out: Any = resource
    for path in sorted(set(paths), key=len):
        out = _replace(out, path)
    return out


def _replace(node: Any, path: Path) -> Any:
    if not path:
        return _MASK
    key, rest = path[0], path[1:]
    if isinstance(node, dict) and isinstance(key, str) and key in node:
        return {**node, key: _replace(node[key], rest)}
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return [*node[:key], _replace(node[key], rest), *node[key + 1 :]]
    return node
