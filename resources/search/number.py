"""number parameters (FHIR R4 search.html#number, #prefix).

Index: each decimal / integer value as a point ``low == high`` (a Range as ``[low, high]``,
open ends at ±1e308), as IEEE doubles.

Search: the value's implicit precision makes ``100`` mean [99.5, 100.5) and ``100.00`` mean
[99.995, 100.005); ``1e2`` has one significant figure, so [50, 150). ``eq`` (the default) wants
the target inside that range, ``ne`` outside it; ``gt lt ge le`` compare with the stated value;
``sa``/``eb`` want the whole target range above/below it; ``ap`` accepts ±10% of the value
(at least the implicit precision).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import Invalid
from resources.search.clauses import PkSet, Target, identity_in, pk_in
from resources.search.extract import Value
from resources.search.parse import split_prefix, unescape
from resources.search.tables import idx_number

MODIFIERS = frozenset({"missing"})
BIG = 1e308


def to_float(v: object) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
    else:
        return None
    return max(-BIG, min(BIG, f))


def index(ident: int, values: list[Value], out: list) -> None:
    for _typ, value in values:
        f = to_float(value)
        if f is not None:
            out.append((idx_number, (ident, f, f)))


@dataclass(frozen=True)
class SearchNumber:
    """A search number: its value and half a unit of its last stated digit, exactly."""

    value: Decimal
    half: Decimal

    def scaled(self, factor: float) -> SearchNumber:
        f = Decimal(repr(factor))
        return SearchNumber(self.value * f, self.half * f)


def parse_number(text: str) -> SearchNumber:
    """``100`` → 100 ± 0.5, ``100.00`` → 100 ± 0.005, ``1e2`` → 100 ± 50."""
    try:
        d = Decimal(text)
    except InvalidOperation as exc:
        raise Invalid(f"{text!r} is not a number") from exc
    if not d.is_finite():
        raise Invalid(f"{text!r} is not a finite number")
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    return SearchNumber(d, Decimal(5).scaleb(exponent - 1))


def _down(d: Decimal) -> float:
    """The largest double not above ``d`` (so a range bound never loses its own value)."""
    f = float(d)
    return math.nextafter(f, -math.inf) if Decimal(f) > d else f


def _up(d: Decimal) -> float:
    f = float(d)
    return math.nextafter(f, math.inf) if Decimal(f) < d else f


def compare(
    prefix: str, n: SearchNumber, tl: sa.ColumnElement, th: sa.ColumnElement
) -> ColumnElement[bool]:
    """The prefix semantics on a target ``[tl, th]``: eq/ne use the implicit precision range
    [value - half, value + half); the others compare with the value itself."""
    value = float(n.value)
    if prefix in ("eq", "ne"):
        lo, hi = _down(n.value - n.half), _up(n.value + n.half)
        if prefix == "eq":
            return sa.and_(tl >= lo, th < hi)
        return sa.or_(tl < lo, th >= hi)
    if prefix == "gt":
        return th > value
    if prefix == "lt":
        return tl < value
    if prefix == "ge":
        return th >= value
    if prefix == "le":
        return tl <= value
    if prefix == "sa":
        return tl > value
    if prefix == "eb":
        return th < value
    if prefix == "ap":
        delta = max(abs(n.value) / 10, n.half)
        return sa.and_(tl <= _up(n.value + delta), th >= _down(n.value - delta))
    raise Invalid(f"unknown prefix {prefix!r}")


def clause(target: Target, modifier: str | None, values: Sequence[str]) -> PkSet:
    conds = []
    for v in values:
        prefix, text = split_prefix(unescape(v))
        conds.append(compare(prefix, parse_number(text), idx_number.c.low, idx_number.c.high))
    return pk_in(idx_number, identity_in(idx_number, target.idents), sa.or_(*conds))
