"""Check 3's shortcut (:mod:`resources.validation.r4b`): a quick proof that an R4B model of
fhir.resources accepts a resource, so that the model itself (the slowest of the three checks of
:mod:`resources.validation`) runs only where it may object.

``accepts(cls, data)`` walks ``data`` along the R4B model ``cls`` and its nested models, doing for
each object what validating it with the model does, from the models' own definitions:

* each known property (by JSON name) is validated as its model field: a primitive field (value,
  list and null handling included) by a pydantic ``TypeAdapter`` of that field's annotation and
  constraints, the same core validation the model runs; a complex field's object by recursing
  into its model, a nested resource's by the model its ``resourceType`` names;
* a ``null`` in a list of complex elements is refused (``reject_null_complex_elements``), except
  in the ``_name`` lists aligned with primitive arrays;
* the required primitives (``get_required_fields``: a value, or an extension in ``_name``) and
  the choice elements (``get_one_of_many_fields``: at most one value, one if required), as
  ``validate_after_model_construction`` checks them; pydantic-required fields must be present;
* ``FHIRPrimitiveExtension`` needs an ``id``, ``extension`` or ``fhir_comments``.

A property the model does not have gives only an ``extra_forbidden`` finding, which
:mod:`resources.validation.r4b` always drops, so it is skipped here. ``True`` means the model
finds nothing but such properties; ``False`` means "not shown": the caller then runs the model,
whose findings are the verdict. So validation is never weaker than with the model alone:
wherever this walk meets something it does not reproduce exactly (a model with a validator not
listed here, a property given by its Python field name, ``resourceType`` on a non-resource, a
non-object where a model belongs, an unknown nested type, an exception), it answers ``False``.
``tests/resources/validation/test_validation_r4b_accepts.py`` checks on the official examples, Synthea and
generated bad input that ``True`` never stands where the model objects.
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

import pydantic
from fhir_core.constraints import FHIR_TYPES_MAPS
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from fhir_core.utils import is_list_type

# The model validators this walk reproduces (by the name of the function); any other validator
# on a model makes ``accepts`` answer False for objects of that model.
_BASE_VALIDATORS = frozenset({"reject_null_complex_elements", "validate_after_model_construction"})
_EXTENSION_VALIDATOR = "validate_extension_or_fhir_comment_required"
# Model settings that do not change how a field's value validates (extra: skipped, see above;
# populate_by_name: refused, see above); any other makes ``accepts`` answer False.
_KNOWN_CONFIG = frozenset({"extra", "validate_assignment", "populate_by_name"})


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    is_list: bool
    # primitive: the core validator of the whole field (its TypeAdapter's); complex: the model
    # class (None: a resource chosen by its resourceType), and which base the field's type has
    # (Resource or Element).
    validate: Callable[[Any], Any] | None
    model: type[FHIRAbstractModel] | None
    resource_base: str | None
    prefix: str  # of the type names in FHIR_TYPES_MAPS ("R4." for fhir.resources' R4B)
    null_items: bool  # a None item of the list is allowed (``_name`` lists, and only those)
    nullable: bool  # the field takes None (Optional; required elements are not)


@dataclass(frozen=True, slots=True)
class _Model:
    fields: dict[str, _Field]  # by JSON name (alias)
    by_name_only: frozenset[str]  # Python field names that are not also a JSON name
    has_resource_type: bool  # resourceType is a field (never, in R4B: it is popped)
    resource_type: str
    required: tuple[str, ...]  # pydantic-required fields' JSON names
    primitives: tuple[tuple[str, str | None], ...]  # (JSON name, its ``_name``) required
    choices: tuple[tuple[tuple[str, ...], bool], ...]  # (JSON names, one is required)
    extension_rule: bool  # FHIRPrimitiveExtension's "id, extension or fhir_comments"
    understood: bool  # False: a validator this walk does not reproduce


def accepts(cls: type[FHIRAbstractModel], data: Any) -> bool:
    """Whether ``cls.model_validate(data)`` is certain to find nothing but properties the model
    does not have (see the module)."""
    try:
        return _object(cls, data)
    except Exception:  # noqa: BLE001 - a field validator failing otherwise than pydantic does
        # (TypeError...), deep nesting, a model whose tables cannot be read: not shown, and the
        # model itself runs, reporting what it reported before (r4b.check).
        return False


def _object(cls: type[FHIRAbstractModel], node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    spec = _model(cls)
    if not spec.understood:
        return False
    if "resource_type" in node:
        return False  # popped and compared by FHIRAbstractModel.__init__
    if "resourceType" in node and not spec.has_resource_type:
        if node["resourceType"] != spec.resource_type:
            return False
    fields = spec.fields
    for key, value in node.items():
        field = fields.get(key)
        if field is None:
            if key in spec.by_name_only:
                return False  # populate_by_name: validated under its Python name
            continue  # extra_forbidden: dropped by r4b (rule 1)
        if value is None:
            if field.nullable:
                continue
            return False
        if field.validate is not None:
            try:
                field.validate(value)
            except pydantic.ValidationError:
                return False
            continue
        if field.is_list:
            if not isinstance(value, list):
                return False
            for item in value:
                if item is None:
                    if not field.null_items:
                        return False
                elif not _complex(field, item):
                    return False
        elif not _complex(field, value):
            return False
    for name in spec.required:
        if name not in node:
            return False
    for name, ext in spec.primitives:
        if node.get(name) is None:
            companion = node.get(ext) if ext is not None else None
            if not (isinstance(companion, dict) and companion.get("extension")):
                return False
    for names, required in spec.choices:
        present = sum(1 for n in names if node.get(n) is not None)
        if present > 1 or (required and present == 0):
            return False
    if spec.extension_rule and all(
        node.get(k) is None for k in ("id", "extension", "fhir_comments")
    ):
        return False
    return True


def _complex(field: _Field, value: Any) -> bool:
    if not isinstance(value, dict):
        return False  # a string would be parsed as JSON by fhir_model_validator
    if field.model is not None:
        return _object(field.model, value)
    kind = value.get("resourceType")
    if not isinstance(kind, str):
        return False
    path = FHIR_TYPES_MAPS.get(f"{field.prefix}{kind}Type")
    if path is None:
        return False
    model = _import(path)
    if not isinstance(model, type) or not issubclass(model, FHIRAbstractModel):
        return False
    is_resource = model.has_resource_base()
    if (field.resource_base == "Resource") != is_resource:
        return False
    return _object(model, value)


# -- the tables, from the models -------------------------------------------------------------------


def prepare(cls: type[FHIRAbstractModel]) -> int:
    """Build the walk's tables for ``cls`` and every model it reaches, as first use would;
    returns how many. A preforking server does this before it forks, so that its workers share
    the tables instead of each building its own (``fhir_server.runtime.app.preload``)."""
    seen: set[type] = set()
    pending: list[type[FHIRAbstractModel]] = [cls]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        pending.extend(f.model for f in _model(current).fields.values() if f.model is not None)
    return len(seen)


@cache
def _import(path: str) -> Any:
    """The class a FHIR_TYPES_MAPS entry names (``fhir.resources.R4B.patient.Patient``)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@cache
def _model(cls: type[FHIRAbstractModel]) -> _Model:
    fields: dict[str, _Field] = {}
    understood = True
    for name, info in cls.model_fields.items():
        alias = info.alias or name
        field = _field(name, info)
        if field is None:
            understood = False
            continue
        fields[alias] = field
    names = frozenset(n for n, i in cls.model_fields.items() if (i.alias or n) != n)
    alias_of = {n: (i.alias or n) for n, i in cls.model_fields.items()}
    probe = cls.model_construct()
    elements = cls.get_alias_mapping()
    primitives = []
    for element, ext in probe.get_required_fields():
        if element not in elements:
            understood = False  # the model itself would fail on its own table
            continue
        primitives.append((alias_of[elements[element]], alias_of.get(ext) if ext else None))
    choices = []
    for group in probe.get_one_of_many_fields().values():
        extra: Any = cls.model_fields[group[0]].json_schema_extra
        choices.append((tuple(alias_of[n] for n in group), extra["one_of_many_required"] is True))
    if set(cls.model_config) - _KNOWN_CONFIG:
        understood = False  # a setting that might change how a primitive validates
    validators = cls.__pydantic_decorators__
    found = {d.func.__name__ for d in validators.model_validators.values()}
    extension_rule = _EXTENSION_VALIDATOR in found
    if (
        found - _BASE_VALIDATORS - {_EXTENSION_VALIDATOR}
        or validators.field_validators
        or validators.validators
        or validators.root_validators
        or (extension_rule and cls.__name__ != "FHIRPrimitiveExtension")
    ):
        understood = False
    return _Model(
        fields=fields,
        by_name_only=names - set(fields),
        has_resource_type="resourceType" in cls.model_fields,
        resource_type=cls.__resource_type__,
        required=tuple(alias_of[n] for n, i in cls.model_fields.items() if i.is_required()),
        primitives=tuple(primitives),
        choices=tuple(choices),
        extension_rule=extension_rule,
        understood=understood,
    )


def _field(name: str, info: Any) -> _Field | None:
    """How to check one field; None where its type is not understood."""
    is_list = is_list_type(info)
    base = _model_type(info.annotation)
    if base is None:
        annotation = info.annotation
        if info.metadata:  # constraints given in Field(...) (none in fhir.resources 8)
            annotation = Annotated[annotation, *info.metadata]
        validate = _adapter(annotation).validator.validate_python
        return _Field(name, is_list, validate, None, None, "", False, _nullable(info.annotation))
    if isinstance(base, str):
        return None
    model: type[FHIRAbstractModel] | None = base.get_model_klass()
    kind = None
    if issubclass(base, FhirElementOrResourceBase):
        kind = model.__name__ if model is not None else None
        if kind not in ("Resource", "Element"):
            return None
        model = None
    null_items = is_list and name.endswith("__ext") and _list_allows_none(info.annotation)
    nullable = _nullable(info.annotation)
    return _Field(name, is_list, None, model, kind, base._prefix, null_items, nullable)


@cache
def _adapter(annotation: Any) -> pydantic.TypeAdapter:
    """One TypeAdapter per distinct annotation (a few dozen for all the models)."""
    return pydantic.TypeAdapter(annotation)


def _model_type(annotation: Any) -> type[FhirBase] | str | None:
    """The FhirBase type inside an annotation (through Optional and List); None for a primitive;
    ``"mixed"`` where a union mixes it with something other than None."""
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None:
        return None
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) or origin is list:
        found = [_model_type(a) for a in args]
        models = [f for f in found if f is not None]
        if not models:
            return None
        if len(models) != len(found) or len(models) > 1:
            return "mixed"
        return models[0]
    if origin is Annotated:
        return _model_type(args[0])
    return None


def _nullable(annotation: Any) -> bool:
    """Whether a field's annotation admits None (``X | None``)."""
    return annotation is None or type(None) in typing.get_args(annotation)


def _list_allows_none(annotation: Any) -> bool:
    """Whether the list inside ``Optional[List[X | None]]`` admits None items."""
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is list:
            (item,) = typing.get_args(arg)
            return type(None) in typing.get_args(item)
    return False
