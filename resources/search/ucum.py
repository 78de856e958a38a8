"""A small UCUM canonicaliser (https://ucum.org/ucum): enough to compare the units clinical data
uses (mass, length, volume, time, amount of substance, pressure, their metric prefixes, products,
quotients, powers, ``10*n`` factors and ``{annotations}``) in base units.

``canonical("mg/dL")`` → ``(10.0, "g.m-3")``: the factor to base units and the canonical unit
string. Units with an offset (Cel, [degF]) or unknown atoms give None, and such quantities are
then only found by their own unit.
"""

from __future__ import annotations

import re
from functools import lru_cache

SYSTEM = "http://unitsofmeasure.org"

# atom → (factor, {base: exponent}); metric atoms accept prefixes.
_METRIC: dict[str, tuple[float, dict[str, int]]] = {
    "g": (1.0, {"g": 1}),
    "m": (1.0, {"m": 1}),
    "s": (1.0, {"s": 1}),
    "L": (1e-3, {"m": 3}),
    "l": (1e-3, {"m": 3}),
    "mol": (1.0, {"mol": 1}),
    "eq": (1.0, {"eq": 1}),
    "U": (1.0, {"U": 1}),
    "Pa": (1000.0, {"g": 1, "m": -1, "s": -2}),
    "bar": (1e8, {"g": 1, "m": -1, "s": -2}),
    "[IU]": (1.0, {"[IU]": 1}),
    "[iU]": (1.0, {"[IU]": 1}),
}
_PLAIN: dict[str, tuple[float, dict[str, int]]] = {
    "min": (60.0, {"s": 1}),
    "h": (3600.0, {"s": 1}),
    "d": (86400.0, {"s": 1}),
    "wk": (604800.0, {"s": 1}),
    "mo": (2629800.0, {"s": 1}),
    "a": (31557600.0, {"s": 1}),
    "[lb_av]": (453.59237, {"g": 1}),
    "[oz_av]": (28.349523125, {"g": 1}),
    "[in_i]": (0.0254, {"m": 1}),
    "[ft_i]": (0.3048, {"m": 1}),
    "mm[Hg]": (133322.387415, {"g": 1, "m": -1, "s": -2}),
    "cm[H2O]": (98066.5, {"g": 1, "m": -1, "s": -2}),
    "%": (0.01, {}),
    "1": (1.0, {}),
}
_PREFIX = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3,
    "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12,
    "f": 1e-15, "a": 1e-18,
}  # fmt: skip

_TERM = re.compile(r"^(?P<atom>.*?)(?P<exp>[+-]?\d+)?$")
_TEN = re.compile(r"^10[*^](?P<exp>[+-]?\d+)$")
_ANNOTATION = re.compile(r"\{[^{}]*\}")


def _atom(atom: str) -> tuple[float, dict[str, int]] | None:
    if atom in _PLAIN:
        return _PLAIN[atom]
    if atom in _METRIC:
        return _METRIC[atom]
    for plen in (2, 1):
        prefix, rest = atom[:plen], atom[plen:]
        if prefix in _PREFIX and rest in _METRIC:
            f, dims = _METRIC[rest]
            return _PREFIX[prefix] * f, dims
    return None


def _term(term: str) -> tuple[float, dict[str, int]] | None:
    ten = _TEN.match(term)
    if ten:
        return 10.0 ** int(ten["exp"]), {}
    if term in _PLAIN or term in _METRIC or _atom(term) is not None:
        return _atom(term)
    m = _TERM.match(term)
    if not m or not m["atom"]:
        return None
    base = _atom(m["atom"])
    if base is None:
        return None
    exp = int(m["exp"]) if m["exp"] else 1
    f, dims = base
    return f**exp, {k: v * exp for k, v in dims.items()}


@lru_cache(maxsize=4096)
def canonical(unit: str) -> tuple[float, str] | None:
    """(factor, canonical unit) so that ``value * factor`` is in the canonical unit."""
    if not unit or "(" in unit or " " in unit:
        return None
    text = _ANNOTATION.sub("", unit)
    if text == "":
        return 1.0, "1"
    factor = 1.0
    dims: dict[str, int] = {}
    for sign, term in re.findall(r"([./]?)([^./]+)", text):
        got = _term(term)
        if got is None:
            return None
        f, d = got
        k = -1 if sign == "/" else 1
        factor *= f**k
        for base, e in d.items():
            dims[base] = dims.get(base, 0) + k * e
    name = ".".join(f"{b}{e if e != 1 else ''}" for b, e in sorted(dims.items()) if e != 0)
    return float(f"{factor:.15g}"), name or "1"
