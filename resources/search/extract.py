"""Values of a search parameter's FHIRPath expression in a resource (FHIR R4 fhirpath.html,
searchparameter-definitions' ``expression``).

Each union part of an expression that applies to a resource type is compiled once into one of:

- a fast path: plain navigation over the JSON (``Patient.name``, ``Observation.component.code``),
  choice elements (``Observation.value`` finds ``valueQuantity``, ``valueString`` ...), type
  filters (``(Observation.value as Quantity)``, ``.as(Age)``), ``[n]``, ``.where(resolve() is
  Patient)`` and ``.where(system='phone')``. The FHIR type of every step comes from fhirpathpy's
  R4 model, so each value carries its type like fhirpathpy's own result nodes do.
- fhirpathpy for everything else.

Every value is a ``(fhir_type, json_value)`` pair; the type is ``None`` only where fhirpathpy
cannot tell it. ``tests/resources/search/test_extract.py`` checks the fast path against
fhirpathpy on all 604 R4 examples and every applicable definition.

``as`` is read as a per-item type filter (``ofType``): several R4 definitions apply it to
repeating elements (``Observation.component.value as Quantity``), where FHIRPath's singleton rule
would make the expression fail.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

Value = tuple[str | None, Any]
Extractor = Callable[[dict], list[Value]]

PRIMITIVES = frozenset(
    {
        "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary",
        "instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt",
        "positiveInt", "uuid", "xhtml",
    }
)  # fmt: skip

_ROOT_BASES = ("Resource", "DomainResource")


class NotFast(Exception):
    """The expression uses something the fast path does not implement."""


# -- the R4 model (fhirpathpy's) -------------------------------------------------------------
class _Model:
    def __init__(self) -> None:
        from fhirpathpy.models import models

        m = models["r4"]
        self.path2type: dict[str, str] = m["path2Type"]
        self.choices: dict[str, list[str]] = m["choiceTypePaths"]
        self.elsewhere: dict[str, str] = m["pathsDefinedElsewhere"]
        self.parent: dict[str, str] = m["type2Parent"]
        self.raw = m
        backbones: set[str] = set()
        for path in list(self.path2type) + list(self.choices):
            parts = path.split(".")
            for i in range(2, len(parts)):
                backbones.add(".".join(parts[:i]))
        self.backbones = backbones

    def is_a(self, typ: str | None, wanted: str) -> bool:
        """``typ`` is ``wanted`` or derives from it (Age is a Quantity)."""
        seen = 0
        while typ is not None and seen < 16:
            if typ == wanted:
                return True
            typ = self.parent.get(typ)
            seen += 1
        return False


@lru_cache(maxsize=1)
def model() -> _Model:
    return _Model()


def type_name(name: str) -> str:
    """FHIR type name as fhirpathpy reports it: ``DateTime`` → ``dateTime``."""
    lowered = name[:1].lower() + name[1:]
    return lowered if lowered in PRIMITIVES else name


# -- references ----------------------------------------------------------------------------
_HISTORY = "/_history/"


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference points at: from ``reference`` (relative ``Type/id``,
    ``Type/id/_history/v``, or absolute ``.../Type/id``), else from ``Reference.type``. Contained
    (``#id``) and ``urn:`` references give None."""
    if not isinstance(ref, dict):
        return None
    target = ref.get("reference")
    if isinstance(target, str) and target and not target.startswith(("#", "urn:")):
        path = target.split("?", 1)[0]
        cut = path.find(_HISTORY)
        if cut >= 0:
            path = path[:cut]
        parts = path.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
            return parts[-2]
        return None
    typ = ref.get("type")
    if isinstance(typ, str) and target is None:
        return typ.rsplit("/", 1)[-1]
    return None


# -- parsing a union part -----------------------------------------------------------------
def split_union(expression: str) -> list[str]:
    """Top-level ``|`` parts of an expression."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quote = not quote
        elif quote:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


_ROOT = re.compile(r"^\(*\s*([A-Za-z_][A-Za-z0-9_]*)")


def part_root(part: str) -> str | None:
    m = _ROOT.match(part)
    return m.group(1) if m else None


def applies_to(part: str, res_type: str) -> bool:
    """Whether a union part can select anything in a ``res_type`` resource."""
    root = part_root(part)
    if root is None:
        return True  # e.g. %resource...: let fhirpathpy decide
    if root[:1].islower():
        return True  # InsurancePlan-name's `name | alias`: members of the resource itself
    return root == res_type or root in _ROOT_BASES


_TOKEN = re.compile(
    r"\s*(?:(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<str>'(?:[^'\\]|\\.)*')|(?P<int>\d+)"
    r"|(?P<op>!=|[.()\[\]=]))"
)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise NotFast(text)
        out.append(m.group(m.lastgroup))  # type: ignore[arg-type]
        pos = m.end()
    return out


class _Parser:
    """part := primary ('.' call | '[' int ']')* ; primary := '(' part 'as' T ')' | ident"""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise NotFast(f"expected {want!r}, got {tok!r}")
        self.i += 1
        return tok

    def parse(self) -> list[tuple]:
        steps = self.part()
        if self.peek() is not None:
            raise NotFast(f"trailing {self.peek()!r}")
        return steps

    def part(self) -> list[tuple]:
        if self.peek() == "(":
            self.take("(")
            steps = self.part()
            self.take("as")
            steps.append(("as", self.ident()))
            self.take(")")
        else:
            steps = [("root", self.ident())]
        while self.peek() in (".", "["):
            if self.take() == "[":
                idx = self.take()
                if not idx.isdigit():
                    raise NotFast(idx)
                self.take("]")
                steps.append(("index", int(idx)))
                continue
            name = self.take()
            if name not in ("as", "is") and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise NotFast(name)
            if self.peek() != "(":
                if name in ("as", "is"):
                    raise NotFast(name)
                steps.append(("child", name))
                continue
            self.take("(")
            if name in ("as", "ofType"):
                steps.append(("as", self.ident()))
            elif name == "where":
                steps.append(self.condition())
            else:
                raise NotFast(name)
            self.take(")")
        return steps

    def ident(self) -> str:
        tok = self.take()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok) or tok in ("as", "is"):
            raise NotFast(tok)
        return tok

    def condition(self) -> tuple:
        if self.peek() == "resolve":
            self.take("resolve")
            self.take("(")
            self.take(")")
            self.take("is")
            return ("resolve_is", self.ident())
        field = self.ident()
        self.take("=")
        lit = self.take()
        if not (lit.startswith("'") and lit.endswith("'")) or "\\" in lit:
            raise NotFast(lit)
        return ("field_eq", field, lit[1:-1])


# -- compiling the steps against the model ------------------------------------------------
def _child(key_types: Sequence[tuple[str, str | None]]) -> Callable[[list[Value]], list[Value]]:
    if len(key_types) == 1:
        key, rtype = key_types[0]

        def step(items: list[Value]) -> list[Value]:
            out: list[Value] = []
            for _t, v in items:
                if type(v) is dict:
                    x = v.get(key)
                    if x is None:
                        continue
                    if type(x) is list:
                        out.extend((rtype, e) for e in x if e is not None)
                    else:
                        out.append((rtype, x))
            return out

        return step

    def step_choice(items: list[Value]) -> list[Value]:
        out: list[Value] = []
        for _t, v in items:
            if type(v) is dict:
                for key, rtype in key_types:
                    x = v.get(key)
                    if x is None:
                        continue
                    if type(x) is list:
                        out.extend((rtype, e) for e in x if e is not None)
                    else:
                        out.append((rtype, x))
        return out

    return step_choice


def compile_fast(res_type: str, part: str) -> Extractor:
    """Compile one union part into a fast extractor; raises ``NotFast``."""
    special = _SPECIAL.get(part)
    if special is not None:
        return special
    steps = _Parser(part).parse()
    root = steps[0][1]
    if root == res_type or root in _ROOT_BASES:
        ctx = root
    elif root[:1].islower():
        ctx = res_type
        steps = [("root", res_type), ("child", root), *steps[1:]]
    else:
        return lambda resource: []
    funcs = _compile_steps(ctx, {res_type}, steps[1:])
    if funcs is None:
        return lambda resource: []

    def run(resource: dict) -> list[Value]:
        items: list[Value] = [(res_type, resource)]
        for f in funcs:
            if not items:
                return items
            items = f(items)
        return items

    return run


Step = Callable[[list[Value]], list[Value]]


def _compile_steps(
    ctx: str | None, cur_types: set[str | None], steps: list[tuple]
) -> list[Step] | None:
    """The step functions from a model context (``Observation``, ``Observation.component``,
    ``CodeableConcept``); None when the steps can never select anything."""
    return _walk(ctx, cur_types, steps)[0]


def _walk(
    ctx: str | None, cur_types: set[str | None], steps: list[tuple]
) -> tuple[list[Step] | None, str | None]:
    """The step functions, and the model path of the last element when it is a ``code``."""
    mdl = model()
    funcs: list[Step] = []
    code_path: str | None = None
    for step in steps:
        op = step[0]
        code_path = None
        if op == "child":
            if ctx is None:
                raise NotFast(f"no model path before {step[1]}")
            name = step[1]
            path = f"{ctx}.{name}"
            path = mdl.elsewhere.get(path, path)
            if path in mdl.choices:
                kts = [(name + t, type_name(t)) for t in mdl.choices[path]]
                funcs.append(_child(kts))
                cur_types = {t for _k, t in kts}
                ctx = None  # a type filter must come before any further navigation
                continue
            typ = mdl.path2type.get(path)
            if typ is not None:
                if typ == "Resource":
                    raise NotFast("navigation into a contained resource")
                if typ.startswith("System."):
                    typ = "string"
                funcs.append(_child([(name, typ)]))
                cur_types = {typ}
                ctx = None if typ in PRIMITIVES else typ
                code_path = path if typ == "code" else None
            elif path in mdl.backbones:
                funcs.append(_child([(name, path)]))
                cur_types = {path}
                ctx = path
            else:
                raise NotFast(f"unknown element {path}")
        elif op == "as":
            wanted = type_name(step[1])
            keep = {t for t in cur_types if t is not None and mdl.is_a(t, wanted)}
            if not keep:
                return None, None
            funcs.append(_type_filter(frozenset(keep)))
            cur_types = set(keep)
            only = next(iter(keep)) if len(keep) == 1 else None
            ctx = None if only is None or only in PRIMITIVES else only
        elif op == "index":
            funcs.append(_index(step[1]))
        elif op == "resolve_is":
            if cur_types != {"Reference"}:
                raise NotFast("resolve() on a non-Reference")
            funcs.append(_resolve_is(step[1]))
        elif op == "field_eq":
            if ctx is None or mdl.path2type.get(f"{ctx}.{step[1]}") not in PRIMITIVES:
                raise NotFast("where() on a non-primitive field")
            funcs.append(_field_eq(step[1], step[2]))
        else:  # pragma: no cover - the parser makes no other steps
            raise NotFast(op)
    return funcs, code_path


def code_element(res_type: str, part: str) -> str | None:
    """The model path (``Patient.gender``) when a union part selects a ``code`` element by a
    plain path, else None: values of such a part have the element's implicit code system."""
    try:
        steps = _Parser(part).parse()
    except NotFast:
        return None
    root = steps[0][1]
    if root == res_type or root in _ROOT_BASES:
        ctx = root
    elif root[:1].islower():
        ctx = res_type
        steps = [("root", res_type), ("child", root), *steps[1:]]
    else:
        return None
    try:
        return _walk(ctx, {res_type}, steps[1:])[1]
    except NotFast:
        return None


RelativeExtractor = Callable[[Value, dict], list[Value]]


def compile_relative(ctx_type: str, expression: str, res_type: str) -> RelativeExtractor:
    """An expression evaluated on one element (a composite's component, e.g. ``code`` or
    ``value.as(Quantity)`` on an ``Observation.component``); ``%resource`` is the resource."""
    fns: list[RelativeExtractor] = []
    for part in split_union(expression):
        fns.append(_relative_part(ctx_type, part, res_type))
    if len(fns) == 1:
        return fns[0]
    return lambda element, resource: [v for f in fns for v in f(element, resource)]


def _relative_part(ctx_type: str, part: str, res_type: str) -> RelativeExtractor:
    if part.startswith("%resource."):
        whole = ExpressionPlan(res_type, res_type + part[len("%resource") :])
        return lambda element, resource: whole(resource)
    try:
        steps = _Parser("__ctx__." + part).parse()[1:]
        funcs = _compile_steps(ctx_type, {ctx_type}, steps)
    except NotFast:
        return _relative_fhirpath(ctx_type, part)
    if funcs is None:
        return lambda element, resource: []

    def run(element: Value, resource: dict) -> list[Value]:
        items = [element]
        for f in funcs:
            if not items:
                return items
            items = f(items)
        return items

    return run


def _relative_fhirpath(ctx_type: str, part: str) -> RelativeExtractor:
    import fhirpathpy
    from fhirpathpy.engine.nodes import ResourceNode

    text = as_to_of_type(part)
    fn = fhirpathpy.compile(text, model().raw, {**FHIRPATH_OPTIONS, "returnRawData": True})

    def run(element: Value, resource: dict) -> list[Value]:
        node = ResourceNode.create_node(element[1], ctx_type)
        try:
            return [node_value(n) for n in fn(node, {"resource": resource})]
        except Exception:  # noqa: BLE001 - one bad expression must not block a write
            log.warning("FHIRPath %r failed on a %s of %s", text, ctx_type, resource.get("id"))
            return []

    return run


def _type_filter(keep: frozenset[str]) -> Callable[[list[Value]], list[Value]]:
    return lambda items: [it for it in items if it[0] in keep]


def _index(n: int) -> Callable[[list[Value]], list[Value]]:
    return lambda items: items[n : n + 1]


def _resolve_is(wanted: str) -> Callable[[list[Value]], list[Value]]:
    return lambda items: [it for it in items if reference_type(it[1]) == wanted]


def _field_eq(field: str, literal: str) -> Callable[[list[Value]], list[Value]]:
    return lambda items: [it for it in items if type(it[1]) is dict and it[1].get(field) == literal]


def _patient_deceased(resource: dict) -> list[Value]:
    """``Patient.deceased.exists() and Patient.deceased != false``"""
    if "deceasedBoolean" in resource:
        return [("boolean", resource["deceasedBoolean"] is not False)]
    if "deceasedDateTime" in resource:
        return [("boolean", True)]
    return [("boolean", False)]


# Hand-written equivalents of whole parts that are not paths (checked against fhirpathpy).
_SPECIAL: dict[str, Extractor] = {
    "Patient.deceased.exists() and Patient.deceased != false": _patient_deceased,
}


# -- fhirpathpy ------------------------------------------------------------------------------
def _resolve(inputs: list) -> list:
    from fhirpathpy.engine.nodes import ResourceNode

    out = []
    for ref in inputs:
        typ = reference_type(ref)
        if typ is not None:
            out.append(ResourceNode.create_node({"resourceType": typ}))
    return out


FHIRPATH_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}}}

_AS_OPERATOR = re.compile(r"\(([^()]+?)\s+as\s+([A-Za-z]+)\)")
_AS_FUNCTION = re.compile(r"\.as\(([A-Za-z]+)\)")


def as_to_of_type(part: str) -> str:
    """``(X as T)`` and ``X.as(T)`` → ``X.ofType(T)``, with primitive type names fixed."""
    part = _AS_OPERATOR.sub(lambda m: f"{m.group(1)}.ofType({type_name(m.group(2))})", part)
    return _AS_FUNCTION.sub(lambda m: f".ofType({type_name(m.group(1))})", part)


def for_fhirpathpy(part: str, res_type: str) -> str:
    """The part as fhirpathpy evaluates it as meant: ``as`` read as ``ofType``, and a
    ``Resource.``/``DomainResource.`` root (which fhirpathpy only matches against a
    ``resourceType`` of that name) replaced by the resource type."""
    root = part_root(part)
    if root in _ROOT_BASES and part.startswith(root + "."):
        part = res_type + part[len(root) :]
    return as_to_of_type(part)


def compile_fhirpath(part: str, res_type: str) -> Extractor:
    """fhirpathpy on one part; values typed from the result nodes. An evaluation error indexes
    nothing for that part (and is logged) rather than failing the write."""
    import fhirpathpy

    text = for_fhirpathpy(part, res_type)
    fn = fhirpathpy.compile(text, model().raw, {**FHIRPATH_OPTIONS, "returnRawData": True})

    def run(resource: dict) -> list[Value]:
        try:
            return [node_value(n) for n in fn(resource, None)]  # None: no %context variables
        except Exception:  # noqa: BLE001 - one bad expression must not block a write
            log.warning("FHIRPath %r failed on %s/%s", text, res_type, resource.get("id"))
            return []

    return run


def node_value(node: Any) -> Value:
    """A fhirpathpy result (with ``returnRawData``) as a ``(type, value)`` pair."""
    from fhirpathpy.engine.nodes import ResourceNode

    if isinstance(node, ResourceNode):
        path = node.path
        data = node.data
        if isinstance(path, str) and path.startswith("System."):
            path = "string"
        return (path, data)
    if isinstance(node, bool):
        return ("boolean", node)
    if isinstance(node, str):
        return ("string", node)
    if isinstance(node, int | float):
        return ("decimal", node)
    return (None, node)


# -- implicit code systems ----------------------------------------------------------------
CODE_WITH_SYSTEM = "code@"  # value type "code@<system>": a code with its implicit system


def implicit_system(res_type: str, part: str) -> str | None:
    from resources.search.codesystems import implicit_systems

    path = code_element(res_type, part)
    if path is None:
        return None
    if path.startswith(("Resource.", "DomainResource.")):
        path = path.split(".", 1)[1]
        return implicit_systems().get(f"Resource.{path}") or implicit_systems().get(
            f"DomainResource.{path}"
        )
    return implicit_systems().get(path)


def _with_system(fn: Extractor, system: str) -> Extractor:
    typ = CODE_WITH_SYSTEM + system

    def run(resource: dict) -> list[Value]:
        return [(typ, v) if t == "code" else (t, v) for t, v in fn(resource)]

    return run


# -- the extractor of a whole expression for one type -------------------------------------
class ExpressionPlan:
    """The compiled extractor of an expression for one resource type, and how it was built."""

    def __init__(self, res_type: str, expression: str, *, allow_fast: bool = True) -> None:
        self.res_type = res_type
        self.expression = expression
        self.parts = [p for p in split_union(expression) if applies_to(p, res_type)]
        fns: list[Extractor] = []
        self.fast_parts = 0
        for p in self.parts:
            fn = None
            if allow_fast:
                try:
                    fn = compile_fast(res_type, p)
                    self.fast_parts += 1
                except NotFast:
                    fn = None
            fn = fn or compile_fhirpath(p, res_type)
            system = implicit_system(res_type, p)
            fns.append(fn if system is None else _with_system(fn, system))
        self.fast = self.fast_parts == len(self.parts)
        if not fns:
            self.run: Extractor = lambda resource: []
        elif len(fns) == 1:
            self.run = fns[0]
        else:

            def run_all(resource: dict) -> list[Value]:
                out: list[Value] = []
                for f in fns:
                    out.extend(f(resource))
                return out

            self.run = run_all

    def __call__(self, resource: dict) -> list[Value]:
        return self.run(resource)
