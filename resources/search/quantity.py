"""quantity parameters (FHIR R4 search.html#quantity, #prefix).

Index: Quantity (and Age, Duration, Distance, Count, SimpleQuantity), Money (currency as an
ISO 4217 code) and Range values, as ``[low, high]`` doubles (a point for a plain value; a
comparator ``<``/``>`` opens one end), keyed by code (and by unit, when it differs) and by
system|code. A UCUM quantity whose unit the small canonicaliser in ``ucum.py`` understands also
gets a row in canonical base units (``mg`` → ``g``) under the parameter's "UCUM" identity.

Search: ``[prefix]number``, ``[prefix]number||code`` (code or unit), ``[prefix]number|system|code``;
with the UCUM system and a convertible unit the search runs on the canonical rows, so
``5.4|http://unitsofmeasure.org|mg`` finds 0.0054 g. Prefixes as for number.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import Invalid
from resources.search import keys, ucum
from resources.search.clauses import PkSet, Target, pk_in
from resources.search.extract import Value
from resources.search.number import BIG, compare, parse_number, to_float
from resources.search.parse import split_escaped, split_prefix, unescape
from resources.search.tables import idx_quantity

MODIFIERS = frozenset({"missing"})
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
_QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity"}
)


def ucum_identity(ident: int) -> int:
    return keys.combine(ident, "ucum")


def _str(v: object) -> str | None:
    return v if isinstance(v, str) and v else None


def _rows(
    ident: int,
    lo: float,
    hi: float,
    system: str | None,
    code: str | None,
    unit: str | None,
    out: list,
) -> None:
    hc = keys.combine(ident, "c", code or unit) if (code or unit) else None
    hsc = keys.combine(ident, "sc", system or "", code) if code else None
    out.append((idx_quantity, (ident, hc, hsc, lo, hi)))
    if code and unit and unit != code:
        out.append((idx_quantity, (ident, keys.combine(ident, "c", unit), None, lo, hi)))
    if system == ucum.SYSTEM and code:
        conv = ucum.canonical(code)
        if conv is not None:
            factor, canon = conv
            cid = ucum_identity(ident)
            clo = lo * factor if abs(lo) < BIG else lo
            chi = hi * factor if abs(hi) < BIG else hi
            hsc = keys.combine(cid, "sc", ucum.SYSTEM, canon)
            out.append((idx_quantity, (cid, None, hsc, clo, chi)))


def _quantity(q: dict) -> tuple[float, float] | None:
    v = to_float(q.get("value"))
    if v is None:
        return None
    comparator = q.get("comparator")
    if comparator in ("<", "<="):
        return -BIG, v
    if comparator in (">", ">="):
        return v, BIG
    return v, v


def index(ident: int, values: list[Value], out: list) -> None:
    for typ, value in values:
        if not isinstance(value, dict):
            continue
        if typ == "Range" or (typ is None and ("low" in value or "high" in value)):
            low, high = value.get("low"), value.get("high")
            low = low if isinstance(low, dict) else {}
            high = high if isinstance(high, dict) else {}
            lo, hi = to_float(low.get("value")), to_float(high.get("value"))
            if lo is None and hi is None:
                continue
            unit_of = low if lo is not None else high
            _rows(
                ident,
                lo if lo is not None else -BIG,
                hi if hi is not None else BIG,
                _str(unit_of.get("system")),
                _str(unit_of.get("code")),
                _str(unit_of.get("unit")),
                out,
            )
        elif typ == "Money" or (typ is None and "currency" in value):
            v = to_float(value.get("value"))
            if v is not None:
                cur = _str(value.get("currency"))
                _rows(ident, v, v, CURRENCY_SYSTEM if cur else None, cur, None, out)
        elif typ in _QUANTITY_TYPES or (typ is None and "value" in value):
            r = _quantity(value)
            if r is not None:
                _rows(
                    ident,
                    r[0],
                    r[1],
                    _str(value.get("system")),
                    _str(value.get("code")),
                    _str(value.get("unit")),
                    out,
                )


def _one(ident: int, value: str) -> ColumnElement[bool]:
    prefix, text = split_prefix(value)
    parts = split_escaped(text, "|")
    if len(parts) not in (1, 3):
        raise Invalid(f"quantity value {value!r} is not number, number||code or number|system|code")
    n = parse_number(unescape(parts[0]))
    t = idx_quantity.c
    if len(parts) == 1:
        return sa.and_(t.hash_identity == ident, compare(prefix, n, t.low, t.high))
    system, code = unescape(parts[1]), unescape(parts[2])
    if not code:
        raise Invalid(f"quantity value {value!r} names a system but no code")
    if not system:
        key = keys.combine(ident, "c", code)
        return sa.and_(t.hash_code == key, compare(prefix, n, t.low, t.high))
    if system == ucum.SYSTEM:
        conv = ucum.canonical(code)
        if conv is not None:
            factor, canon = conv
            key = keys.combine(ucum_identity(ident), "sc", ucum.SYSTEM, canon)
            cond = compare(prefix, n.scaled(factor), t.low, t.high)
            return sa.and_(t.hash_sys_code == key, cond)
    key = keys.combine(ident, "sc", system, code)
    return sa.and_(t.hash_sys_code == key, compare(prefix, n, t.low, t.high))


def clause(target: Target, modifier: str | None, values: Sequence[str]) -> PkSet:
    conds = [_one(i, v) for i in target.idents for v in values]
    return pk_in(idx_quantity, sa.or_(*conds))
