"""The one reader of operation inputs (FHIR R4 operations.html#request).

The router reads every operation call once, after the caller is authorized: the query pairs (of
a GET or a POST, ``_format``/``_pretty`` aside) and the body — a ``Parameters`` resource, or, for
an operation that declares ``bare_resource``, the resource itself — become one ``Parameters``
value on ``FhirRequest.params``. Handlers ask it for typed values; a bad input is a 400
OperationOutcome naming the parameter (and, for the body, ``Parameters.parameter[n]``): a
missing required one has the issue code ``required``, a wrong type or a value repeated where one
is allowed ``invalid``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from resources.errors import Invalid, Issue
from resources.storage.bounds import INT8_MAX, is_whole, whole
from resources.validation import validate_resource

IGNORED = frozenset({"_format", "_pretty"})  # FHIR's own response-format parameters
QUERY = "query"
RESOURCE = "resource"
PART = "part"
# The value[x] types whose JSON value is a string.
TEXT_TYPES = frozenset(
    "value" + t
    for t in (
        "String Code Uri Url Canonical Id Oid Uuid Markdown Date DateTime Instant Time Base64Binary"
    ).split()
)
INTEGER_TYPES = frozenset({"valueInteger", "valueUnsignedInt", "valuePositiveInt"})


@dataclass(frozen=True)
class Input:
    """One input: a query pair or one ``Parameters.parameter``."""

    name: str
    kind: str  # "query", "resource", "part" or the value[x] element name ("valueCode")
    value: object
    where: str | None = None  # "Parameters.parameter[2]"; None for a query pair

    @property
    def expression(self) -> list[str]:
        return [self.where] if self.where else []


class Parameters:
    """The inputs of one operation call, by name."""

    def __init__(self, operation: str, inputs: Iterable[Input] = ()) -> None:
        self.operation = operation
        self.inputs = list(inputs)

    @classmethod
    def read(
        cls,
        operation: str,
        query: Sequence[tuple[str, str]],
        body: object,
        *,
        bare_resource: str | None = None,
    ) -> Parameters:
        """Read the query pairs and the body (None: no body) of a call to ``$operation``."""
        inputs = [Input(k, QUERY, v) for k, v in query if k not in IGNORED]
        if body is None:
            return cls(operation, inputs)
        if not isinstance(body, dict):
            raise Invalid(f"${operation} takes a Parameters resource in the body")
        if body.get("resourceType") != "Parameters":
            if bare_resource is None:
                raise Invalid(f"${operation} takes a Parameters resource in the body")
            inputs.append(Input(bare_resource, RESOURCE, body, "Parameters"))  # the body itself
            return cls(operation, inputs)
        parts = body.get("parameter", [])
        if not isinstance(parts, list):
            raise Invalid(f"${operation}: Parameters.parameter must be a list")
        for i, p in enumerate(parts):
            where = f"Parameters.parameter[{i}]"
            name = p.get("name") if isinstance(p, dict) else None
            if not isinstance(name, str) or not name:
                raise Invalid(f"${operation}: {where} needs a name", expression=[where])
            assert isinstance(p, dict)
            keys = [k for k in p if k.startswith("value") or k in (RESOURCE, PART)]
            if len(keys) != 1:
                raise Invalid(
                    f"${operation}: parameter {name!r} needs exactly one value[x], resource or "
                    "part",
                    expression=[where],
                )
            inputs.append(Input(name, keys[0], p[keys[0]], where))
        return cls(operation, inputs)

    # -- lookup ---------------------------------------------------------------------------

    def all(self, name: str) -> list[Input]:
        return [i for i in self.inputs if i.name == name]

    def has(self, name: str) -> bool:
        return any(i.name == name for i in self.inputs)

    def one(self, name: str, *, required: bool = False) -> Input | None:
        """The single input ``name`` (None when absent); 400 when repeated or, if required,
        missing (issue code ``required``)."""
        found = self.all(name)
        if len(found) > 1:
            raise Invalid(
                f"${self.operation}: parameter {name!r} is given {len(found)} times; it takes "
                "one value",
                expression=[w for i in found for w in i.expression],
            )
        if found:
            return found[0]
        if required:
            text = f"${self.operation}: parameter {name!r} is required"
            raise Invalid(text, [Issue(code="required", diagnostics=text)])
        return None

    def _wrong(self, given: Input, wanted: str) -> Invalid:
        how = "in the query" if given.kind == QUERY else f"as {given.kind}"
        return Invalid(
            f"${self.operation}: parameter {given.name!r} must be {wanted} (given {how})",
            expression=given.expression,
        )

    # -- typed values ---------------------------------------------------------------------

    def _text(self, given: Input, fhir_type: str | None) -> str:
        key = None if fhir_type is None else f"value{fhir_type[:1].upper()}{fhir_type[1:]}"
        kinds = TEXT_TYPES if key is None else {key}
        wanted = f"a non-empty {key or 'string'}"
        if given.kind != QUERY and given.kind not in kinds:
            raise self._wrong(given, wanted)
        if not isinstance(given.value, str) or not given.value:
            raise self._wrong(given, wanted)
        return given.value

    def text(
        self, name: str, *, fhir_type: str | None = None, required: bool = False
    ) -> str | None:
        """A string value: any string-valued ``value[x]``, or only ``fhir_type``'s
        (``"string"``, ``"code"``); a query value as it is."""
        given = self.one(name, required=required)
        return None if given is None else self._text(given, fhir_type)

    def texts(self, name: str, *, fhir_type: str | None = None) -> list[str]:
        return [self._text(g, fhir_type) for g in self.all(name)]

    def boolean(self, name: str, default: bool = False) -> bool:
        """``valueBoolean``, or ``true`` / ``false`` in the query."""
        given = self.one(name)
        if given is None:
            return default
        if given.kind == "valueBoolean" and isinstance(given.value, bool):
            return given.value
        if given.kind == QUERY and given.value in ("true", "false"):
            return given.value == "true"
        raise self._wrong(given, "true or false (valueBoolean)")

    def integer(self, name: str, *, minimum: int | None = 0, maximum: int = INT8_MAX) -> int | None:
        """``valueInteger`` / ``valueUnsignedInt`` / ``valuePositiveInt``, or a whole number in
        the query; at least ``minimum`` and at most ``maximum`` (bigint by default: the values
        reach SQL, resources/storage/bounds.py)."""
        given = self.one(name)
        if given is None:
            return None
        value = given.value
        number: int | None
        if given.kind == QUERY and isinstance(value, str):
            text = value.strip()
            negative = text.startswith("-")
            number = whole(text[1:] if negative else text, maximum)
            if number is None and is_whole(text[1:] if negative else text):
                raise self._wrong(given, f"at most {maximum}")
            if number is not None and negative:
                number = -number
        elif given.kind in INTEGER_TYPES and isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            number = None
        if number is None:
            raise self._wrong(given, f"a whole number, not {value!r}")
        if minimum is not None and number < minimum:
            raise self._wrong(given, "not negative" if minimum == 0 else f"at least {minimum}")
        if number > maximum:
            raise self._wrong(given, f"at most {maximum}")
        return number

    def _reference(self, given: Input) -> str:
        if given.kind == QUERY and isinstance(given.value, str) and given.value:
            return given.value
        value = given.value
        if given.kind == "valueReference" and isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and ref:
                return ref
        raise self._wrong(given, "a valueReference with a reference")

    def reference(self, name: str, *, required: bool = False) -> str | None:
        """``valueReference.reference`` (``Patient/1``), or the reference in the query."""
        given = self.one(name, required=required)
        return None if given is None else self._reference(given)

    def references(self, name: str) -> list[str]:
        return [self._reference(g) for g in self.all(name)]

    def complex(self, name: str, fhir_type: str | None = None) -> dict | None:
        """A complex value (``valueCoding``, ``valueCodeableConcept``, or only ``fhir_type``'s);
        a query cannot carry one."""
        given = self.one(name)
        if given is None:
            return None
        wanted = f"value{fhir_type}" if fhir_type else None
        if given.kind == QUERY:
            raise self._wrong(given, "a complex value (POST a Parameters resource to send it)")
        ok_kind = given.kind == wanted if wanted else given.kind.startswith("value")
        if not ok_kind or not isinstance(given.value, dict):
            raise self._wrong(given, f"a {wanted or 'complex value'}")
        return given.value

    def _resource(self, given: Input, res_type: str | None) -> dict:
        value = given.value
        if given.kind != RESOURCE or not isinstance(value, dict):
            raise self._wrong(given, f"a resource{f' ({res_type})' if res_type else ''}")
        if not isinstance(value.get("resourceType"), str):
            raise self._wrong(given, "a resource with a resourceType")
        if res_type is not None and value["resourceType"] != res_type:
            raise self._wrong(given, f"a {res_type}")
        return value

    def resource(
        self, name: str, res_type: str | None = None, *, validate: bool = False
    ) -> dict | None:
        """A resource sent inline; with ``validate`` checked as R4 like any write (a bad one is
        a 400 listing its issues)."""
        given = self.one(name)
        if given is None:
            return None
        value = self._resource(given, res_type)
        if validate:
            errors = [i for i in validate_resource(value) if i.severity in ("error", "fatal")]
            if errors:
                raise Invalid(
                    f"${self.operation}: the {value['resourceType']} in {name!r} is not valid",
                    errors,
                )
        return value

    def resources(self, name: str) -> list[dict]:
        return [self._resource(g, None) for g in self.all(name)]

    def pairs(self) -> list[tuple[str, str]]:
        """Every input as (name, text), in order, for an operation whose inputs are repeatable
        strings it checks itself (``$export``): a string-valued ``value[x]`` or a
        ``valueReference``'s reference."""
        out = []
        for given in self.inputs:
            if (given.kind in TEXT_TYPES or given.kind == QUERY) and isinstance(given.value, str):
                out.append((given.name, given.value))
            elif given.kind == "valueReference":
                out.append((given.name, self._reference(given)))
            else:
                raise self._wrong(given, "a string, instant or reference value")
        return out
