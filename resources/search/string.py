"""string parameters (FHIR R4 search.html#string).

Index: every string value, and for HumanName and Address each of their parts (family, given,
prefix, suffix, text; line, city, district, state, postalCode, country, text), stored
normalised (accents removed, case folded) for the default starts-with and ``:contains``, and as a
hash of the exact value for ``:exact``.

Search: ``name=eve`` matches values starting with "eve" ignoring case and accents; ``:exact``
matches the whole value, case and accents included; ``:contains`` matches anywhere.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa

from resources.search import keys
from resources.search.clauses import (
    PkSet,
    Target,
    contains,
    identity_in,
    key_in,
    pk_in,
    starts_with,
)
from resources.search.extract import Value
from resources.search.parse import unescape
from resources.search.tables import STRING_LEN, idx_string

MODIFIERS = frozenset({"exact", "contains", "missing"})

_NAME_PARTS: tuple[str, ...] = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS: tuple[str, ...] = (
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
    "text",
)


def normalise(text: str) -> str:
    """Case- and accent-insensitive form: NFKD, combining marks dropped, case folded, runs of
    white space made one space."""
    if text.isascii():
        out = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        out = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    if "  " in out or "\n" in out or "\t" in out:
        out = " ".join(out.split())
    return out.strip()[:STRING_LEN]


def strings_of(typ: str | None, value: object) -> list[str]:
    """The strings a value contributes: itself, or the parts of a HumanName / Address."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        if typ == "HumanName" or (typ is None and ("family" in value or "given" in value)):
            parts = _NAME_PARTS
        elif typ == "Address" or typ is None:
            parts = _ADDRESS_PARTS
        else:
            return []
        out: list[str] = []
        for p in parts:
            v = value.get(p)
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, list):
                out.extend(x for x in v if isinstance(x, str))
        return out
    return []


def index(ident: int, values: list[Value], out: list) -> None:
    for typ, value in values:
        for s in strings_of(typ, value):
            norm = normalise(s)
            out.append((idx_string, (ident, norm, keys.combine(ident, s))))


def clause(target: Target, modifier: str | None, values: Sequence[str]) -> PkSet:
    idents = target.idents
    texts = [unescape(v) for v in values]
    if modifier == "exact":
        hashes = [keys.combine(i, t) for i in idents for t in texts]
        return pk_in(idx_string, key_in(idx_string.c.hash_exact, hashes))
    col = idx_string.c.value_norm
    if modifier == "contains":
        conds = [contains(col, normalise(t)) for t in texts]
    else:
        conds = [starts_with(col, normalise(t)) for t in texts]
    return pk_in(idx_string, identity_in(idx_string, idents), sa.or_(*conds))
