"""Operation input parameters (FHIR R4 operations.html#request): from the query string of a GET
(or POST) and from the ``Parameters`` resource of a POST, with typed accessors that answer a bad
value with a 400 OperationOutcome naming the parameter."""

from __future__ import annotations

from fhir_server.context import FhirRequest
from resources.errors import Invalid
from resources.validation import validate_resource

_SCALARS = (
    "valueString",
    "valueCode",
    "valueUri",
    "valueUrl",
    "valueCanonical",
    "valueBoolean",
    "valueInteger",
    "valueDateTime",
    "valueDate",
    "valueId",
    "valuePositiveInt",
    "valueUnsignedInt",
)


class OpParams:
    """The inputs of one operation call, by name."""

    def __init__(self, req: FhirRequest, operation: str) -> None:
        self.operation = operation
        self._values: dict[str, list[object]] = {}
        for k, v in req.query:
            if k not in ("_format", "_pretty"):
                self._values.setdefault(k, []).append(v)
        body = req.body
        if body is None:
            return
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise Invalid(f"${operation} takes a Parameters resource in the body")
        for p in body.get("parameter") or ():
            name = p.get("name") if isinstance(p, dict) else None
            if not isinstance(name, str):
                raise Invalid(f"${operation}: every Parameters.parameter needs a name")
            value = p.get("resource")
            if value is None:
                value = next((v for k, v in p.items() if k.startswith("value")), None)
            if value is not None:
                self._values.setdefault(name, []).append(value)

    def _one(self, name: str) -> object | None:
        values = self._values.get(name) or []
        if len(values) > 1:
            raise Invalid(f"${self.operation}: parameter {name!r} is given more than once")
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self._one(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise Invalid(f"${self.operation}: parameter {name!r} must be a non-empty string")
        return value

    def texts(self, name: str) -> list[str]:
        return [v for v in self._values.get(name) or [] if isinstance(v, str) and v]

    def flag(self, name: str, default: bool = False) -> bool:
        value = self._one(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise Invalid(f"${self.operation}: parameter {name!r} must be true or false")

    def integer(self, name: str) -> int | None:
        value = self._one(name)
        if value is None:
            return None
        if isinstance(value, bool):
            raise Invalid(f"${self.operation}: parameter {name!r} must be a whole number")
        try:
            number = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise Invalid(
                f"${self.operation}: parameter {name!r} must be a whole number, not {value!r}"
            ) from None
        if number < 0:
            raise Invalid(f"${self.operation}: parameter {name!r} must not be negative")
        return number

    def complex(self, name: str) -> dict | None:
        """A complex value (Coding, CodeableConcept) or a resource; a GET cannot carry one."""
        value = self._one(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise Invalid(
                f"${self.operation}: parameter {name!r} must be a complex value (POST a "
                "Parameters resource to send it)"
            )
        return value

    def resource(self, name: str, res_type: str) -> dict | None:
        """A resource sent inline, validated as R4 like any write (a bad one is a 400 listing
        its issues)."""
        value = self.complex(name)
        if value is None:
            return None
        if value.get("resourceType") != res_type:
            raise Invalid(f"${self.operation}: parameter {name!r} must be a {res_type}")
        errors = [i for i in validate_resource(value) if i.severity in ("error", "fatal")]
        if errors:
            raise Invalid(f"${self.operation}: the {res_type} in {name!r} is not valid", errors)
        return value
