"""composite parameters (FHIR R4 search.html#composite), e.g. Observation
``code-value-quantity=http://loinc.org|8480-6$gt100``.

The components must match in the same element (the same Observation.component), so a composite
is indexed on its own: one ``idx_composite`` row per element and combination of component keys.
Token and reference components are folded into ``hash_key`` (token as ``code`` and
``system|code`` variants, reference as ``Type/id``, ``id`` and URL variants); a quantity, number
or date last component is kept as a range in ``low``/``high`` (a quantity's unit as keys in
``hash_unit``, code or unit, and ``hash_sys_unit``, system and code), a second numeric one in
``low2``/``high2`` (MolecularSequence coordinates), a string one in ``text_norm``.

Search values give one part per component, separated by ``$``; each part uses its component's
syntax (prefixes included). Not supported in components: ``system|`` token parts, ``:modifiers``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import Invalid, NotSupported
from resources.search import date, keys, number, quantity, reference, string, token
from resources.search.clauses import PkSet, Target, pk_in, starts_with
from resources.search.definitions import SearchParam, SearchParameterRegistry
from resources.search.extract import RelativeExtractor, Value, compile_relative
from resources.search.parse import split_escaped, split_prefix, unescape
from resources.search.tables import idx_composite

MODIFIERS = frozenset({"missing"})
KEY_TYPES = frozenset({"token", "reference"})
RANGE_TYPES = frozenset({"quantity", "number", "date"})
_SEP = "\x1f"


@dataclass(frozen=True)
class Layout:
    """The component types of a composite, checked to fit the table."""

    types: tuple[str, ...]

    @classmethod
    def of(cls, param: SearchParam, registry: SearchParameterRegistry) -> Layout:
        types = []
        for comp in param.components:
            p = registry.by_url(comp.definition)
            if p is None:
                raise NotSupported(
                    f"composite {param.code}: component {comp.definition} is not a known "
                    "search parameter"
                )
            types.append(p.type)
        keyed = [t for t in types if t in KEY_TYPES]
        rest = types[len(keyed) :]
        if types[: len(keyed)] != keyed or not keyed:
            raise NotSupported(f"composite {param.code}: component types {types} not supported")
        if rest not in ([], ["string"], ["quantity"], ["number"], ["date"], ["number", "number"]):
            raise NotSupported(f"composite {param.code}: component types {types} not supported")
        return cls(tuple(types))


# -- index -------------------------------------------------------------------------------------
def token_variants(values: list[Value]) -> list[str]:
    out: list[str] = []
    for typ, value in values:
        rows: list = []
        token.index(0, [(typ, value)], rows)
        for _table, row in rows:
            system, code = row[4], row[5]
            if code is not None and row[1] is not None:
                out.append("v" + _SEP + code)
                out.append("sv" + _SEP + (system or "") + _SEP + code)
    return out


def reference_variants(values: list[Value]) -> list[str]:
    rows: list = []
    reference.index(0, values, rows)
    out: list[str] = []
    for table, row in rows:
        if table is not reference.idx_reference:
            continue
        typ, rid, url = row[1], row[2], row[4]
        if rid is not None:
            out.append("i" + _SEP + rid)
            if typ:
                out.append("r" + _SEP + typ + "/" + rid)
        if url is not None:
            out.append("u" + _SEP + url)
    return out


def unit_keys(system: object, code: object, unit: object) -> tuple[int | None, int | None]:
    """(hash_unit, hash_sys_unit) of a quantity's unit."""
    code = code if isinstance(code, str) and code else None
    unit = unit if isinstance(unit, str) and unit else None
    system = system if isinstance(system, str) else ""
    hu = keys.combine(0, "c", code or unit) if (code or unit) else None
    hsu = keys.combine(0, "sc", system, code) if code else None
    return hu, hsu


Ranged = tuple[float, float, int | None, int | None]


def quantity_values(values: list[Value]) -> list[Ranged]:
    out: list[Ranged] = []
    for typ, value in values:
        single: list = []
        quantity.index(0, [(typ, value)], single)
        if not single:
            continue
        lo, hi = single[0][1][3], single[0][1][4]
        v = value if isinstance(value, dict) else {}
        if typ == "Range":
            v = v.get("low") or v.get("high") or {}
        out.append((lo, hi, *unit_keys(v.get("system"), v.get("code"), v.get("unit"))))
    return out


def ranges_of(ptype: str, values: list[Value]) -> list[Ranged]:
    if ptype == "quantity":
        return quantity_values(values)
    out: list[Ranged] = []
    for typ, value in values:
        if ptype == "number":
            f = number.to_float(value)
            if f is not None:
                out.append((f, f, None, None))
        else:
            r = date.value_range(typ, value)
            if r is not None:
                out.append((float(r[0]), float(r[1]), None, None))
    return out


class CompositeIndexer:
    """Index rows of one composite parameter on one resource type."""

    def __init__(
        self, param: SearchParam, registry: SearchParameterRegistry, res_type: str
    ) -> None:
        self.layout = Layout.of(param, registry)
        self.res_type = res_type
        self._compiled: dict[str, list[RelativeExtractor]] = {}
        self.param = param

    def _for(self, ctx_type: str) -> list[RelativeExtractor]:
        fns = self._compiled.get(ctx_type)
        if fns is None:
            fns = [
                compile_relative(ctx_type, c.expression, self.res_type)
                for c in self.param.components
            ]
            self._compiled[ctx_type] = fns
        return fns

    def index(self, ident: int, elements: list[Value], resource: dict, out: list) -> None:
        types = self.layout.types
        for element in elements:
            if element[0] is None:
                continue
            fns = self._for(element[0])
            comp_values = [f(element, resource) for f in fns]
            if not all(comp_values):
                continue
            key_parts: list[list[str]] = []
            i = 0
            while i < len(types) and types[i] in KEY_TYPES:
                vals = comp_values[i]
                variants = token_variants(vals) if types[i] == "token" else reference_variants(vals)
                if not variants:
                    break
                key_parts.append(variants)
                i += 1
            if len(key_parts) != len([t for t in types if t in KEY_TYPES]):
                continue
            rest = types[i:]
            hashes = [keys.combine(ident, *combo) for combo in itertools.product(*key_parts)]
            if not rest:
                for h in hashes:
                    out.append(
                        (idx_composite, (ident, h, None, None, None, None, None, None, None))
                    )
            elif rest == ("string",):
                texts = {
                    string.normalise(s) for t, v in comp_values[i] for s in string.strings_of(t, v)
                }
                for h in hashes:
                    for text in texts:
                        row = (ident, h, None, None, None, None, None, None, text)
                        out.append((idx_composite, row))
            elif len(rest) == 1:
                for lo, hi, hu, hsu in ranges_of(rest[0], comp_values[i]):
                    for h in hashes:
                        out.append((idx_composite, (ident, h, hu, hsu, lo, hi, None, None, None)))
            else:
                firsts = ranges_of(rest[0], comp_values[i])
                seconds = ranges_of(rest[1], comp_values[i + 1])
                for (lo, hi, *_u), (lo2, hi2, *_u2) in itertools.product(firsts, seconds):
                    for h in hashes:
                        out.append((idx_composite, (ident, h, None, None, lo, hi, lo2, hi2, None)))


# -- search ------------------------------------------------------------------------------------
def _token_key(part: str) -> str:
    pieces = split_escaped(part, "|")
    if len(pieces) == 1:
        return "v" + _SEP + unescape(pieces[0])
    if len(pieces) == 2 and pieces[1]:
        return "sv" + _SEP + unescape(pieces[0]) + _SEP + unescape(pieces[1])
    raise Invalid(f"composite token part {part!r} must be code, system|code or |code")


def _reference_key(part: str) -> str:
    ref = unescape(part)
    if "://" in ref or ref.startswith("urn:"):
        return "u" + _SEP + ref
    if "/" in ref:
        local = reference.split_local(ref)
        if local is None:
            raise Invalid(f"composite reference part {part!r} is not Type/id")
        return "r" + _SEP + local[0] + "/" + local[1]
    return "i" + _SEP + ref


def _range_part(
    ptype: str, part: str, low: sa.ColumnElement, high: sa.ColumnElement
) -> list[ColumnElement[bool]]:
    prefix, text = split_prefix(part)
    if ptype == "date":
        sl, sh = date.search_range(unescape(text))
        if prefix == "ap":
            sl, sh = date.approx(sl, sh)
        return [date.compare(prefix, float(sl), float(sh), low, high)]
    conds = []
    if ptype == "quantity":
        pieces = split_escaped(text, "|")
        if len(pieces) == 3:
            text = pieces[0]
            system, code = unescape(pieces[1]), unescape(pieces[2])
            if code:
                hu, hsu = unit_keys(system, code, None)
                t = idx_composite.c
                conds.append(t.hash_sys_unit == hsu if system else t.hash_unit == hu)
        elif len(pieces) != 1:
            raise Invalid(f"composite quantity part {part!r} is not number[|system|code]")
    conds.append(number.compare(prefix, number.parse_number(unescape(text)), low, high))
    return conds


def clause(
    target: Target,
    modifier: str | None,
    values: Sequence[str],
    registry: SearchParameterRegistry,
) -> PkSet:
    layout = Layout.of(target.param, registry)
    t = idx_composite.c
    conds = []
    for v in values:
        parts = split_escaped(v, "$")
        if len(parts) != len(layout.types):
            raise Invalid(
                f"{target.code} takes {len(layout.types)} parts separated by '$', not {v!r}"
            )
        key_parts = []
        extra: list[ColumnElement[bool]] = []
        numeric = 0
        for ptype, part in zip(layout.types, parts, strict=True):
            if ptype == "token":
                key_parts.append(_token_key(part))
            elif ptype == "reference":
                key_parts.append(_reference_key(part))
            elif ptype == "string":
                extra.append(starts_with(t.text_norm, string.normalise(unescape(part))))
            else:
                low, high = (t.low, t.high) if numeric == 0 else (t.low2, t.high2)
                extra.extend(_range_part(ptype, part, low, high))
                numeric += 1
        for ident in target.idents:
            conds.append(sa.and_(t.hash_key == keys.combine(ident, *key_parts), *extra))
    return pk_in(idx_composite, sa.or_(*conds))
