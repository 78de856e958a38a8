"""token parameters (FHIR R4 search.html#token).

Index, per the spec's table of types: Coding (system, code, display), CodeableConcept (each
coding, and text), Identifier (system, value, type.text; and type codings for ``:of-type``),
ContactPoint (value, no system), code (with the implicit system of its element's required value
set, see ``codesystems.py``), and boolean / id / string / uri values (no system).
Each row carries 64-bit keys of (param, code), (param, system, code) and (param, system), the
normalised display/text for ``:text``, and the raw system and code for sorting.

Search: ``code``, ``system|code``, ``|code`` (no system), ``system|`` (any code),
``:not`` (no matching value, including resources with no value at all), ``:text``
(display/text starts with, or has a word starting with, the value, ignoring case and accents),
``:of-type`` (``system|code|value`` on Identifier.type and value).

Terminology modifiers ask a ``CodeSets`` service that the application plugs into the search
engine (``SearchEngine.terminology``; this package never imports ``terminology/``): ``:in`` /
``:not-in`` take a ValueSet canonical URL and match on the (system, code) pairs of its expansion;
``:below`` / ``:above`` take ``system|code`` and match the code and the codes below (above) it in
the code system's hierarchy. Without a service they raise ``NotSupported``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import Invalid, NotSupported
from resources.search import keys
from resources.search.clauses import (
    PkSet,
    Target,
    contains,
    identity_in,
    key_in,
    pk_in,
    pk_not_in,
    starts_with,
)
from resources.search.extract import CODE_WITH_SYSTEM, Value
from resources.search.parse import split_escaped, unescape
from resources.search.string import normalise
from resources.search.tables import STRING_LEN, URI_LEN, idx_token

MODIFIERS = frozenset({"text", "not", "above", "below", "in", "not-in", "of-type", "missing"})
TERMINOLOGY_MODIFIERS = frozenset({"above", "below", "in", "not-in"})


class CodeSets(Protocol):
    """What token search asks of terminology (implemented by ``terminology.Terminology``)."""

    def value_set_codes(self, url: str) -> Collection[tuple[str, str]]:
        """(system, code) of every code in the value set ``url`` (``url|version``)."""
        ...

    def hierarchy_codes(self, system: str, code: str, direction: str) -> Collection[str]:
        """``code`` and the codes ``"below"`` / ``"above"`` it in ``system``'s hierarchy."""
        ...


def _row(ident: int, system: str | None, code: str | None, text: str | None) -> tuple:
    if code is None:
        hv = hsv = None
    else:
        hv = keys.combine(ident, "v", code)
        hsv = keys.combine(ident, "sv", system or "", code)
    hs = keys.combine(ident, "s", system) if system else None
    return (
        idx_token,
        (
            ident,
            hv,
            hsv,
            hs,
            system[:URI_LEN] if system else None,
            code[:STRING_LEN] if code is not None else None,
            normalise(text) if text else None,
        ),
    )


def _str(v: object) -> str | None:
    return v if isinstance(v, str) and v else None


def coding_rows(ident: int, coding: dict, out: list) -> None:
    system, code, display = _str(coding.get("system")), _str(coding.get("code")), None
    display = _str(coding.get("display"))
    if code is not None or display is not None or system is not None:
        out.append(_row(ident, system, code, display))


def identifier_rows(ident: int, identifier: dict, out: list) -> None:
    system, value = _str(identifier.get("system")), _str(identifier.get("value"))
    typ = identifier.get("type")
    text = _str(typ.get("text")) if isinstance(typ, dict) else None
    if value is not None or system is not None or text is not None:
        out.append(_row(ident, system, value, text))
    if value is not None and isinstance(typ, dict):
        for c in typ.get("coding") or ():
            if isinstance(c, dict) and _str(c.get("code")):
                h = keys.combine(ident, "ot", c.get("system") or "", c["code"], value)
                out.append((idx_token, (ident, None, h, None, None, None, None)))


def index(ident: int, values: list[Value], out: list) -> None:
    for typ, value in values:
        if isinstance(value, dict):
            if typ == "CodeableConcept" or (typ is None and ("coding" in value)):
                for c in value.get("coding") or ():
                    if isinstance(c, dict):
                        coding_rows(ident, c, out)
                text = _str(value.get("text"))
                if text is not None:
                    out.append(_row(ident, None, None, text))
            elif typ == "Coding" or (typ is None and "code" in value):
                coding_rows(ident, value, out)
            elif typ == "Identifier":
                identifier_rows(ident, value, out)
            elif typ == "ContactPoint":
                v = _str(value.get("value"))
                if v is not None:
                    out.append(_row(ident, None, v, None))
            elif typ is None and "value" in value:
                identifier_rows(ident, value, out)
        elif isinstance(value, bool):
            out.append(_row(ident, None, "true" if value else "false", None))
        elif isinstance(value, str) and value:
            system = (
                typ[len(CODE_WITH_SYSTEM) :] if typ and typ.startswith(CODE_WITH_SYSTEM) else None
            )
            out.append(_row(ident, system, value, None))
        elif isinstance(value, int | float):
            out.append(_row(ident, None, str(value), None))


def value_keys(ident: int, value: str) -> tuple[str, int]:
    """The column and key a token search value selects: ``code``, ``system|code``, ``|code``,
    ``system|``."""
    parts = split_escaped(value, "|")
    if len(parts) == 1:
        return "hash_value", keys.combine(ident, "v", unescape(parts[0]))
    if len(parts) != 2:
        raise Invalid(f"token value {value!r} has more than one unescaped '|'")
    system, code = unescape(parts[0]), unescape(parts[1])
    if code == "":
        if system == "":
            raise Invalid("token value '|' names neither a system nor a code")
        return "hash_system", keys.combine(ident, "s", system)
    return "hash_sys_value", keys.combine(ident, "sv", system, code)


def of_type_key(ident: int, value: str) -> int:
    parts = split_escaped(value, "|")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise Invalid(f":of-type needs system|code|value, not {value!r}")
    return keys.combine(ident, "ot", *(unescape(p) for p in parts))


def matching(idents: Sequence[int], values: Sequence[str]) -> ColumnElement[bool]:
    """The WHERE on idx_token for any of ``values`` (OR) under any of ``idents``."""
    by_col: dict[str, list[int]] = {}
    for ident in idents:
        for v in values:
            col, key = value_keys(ident, v)
            by_col.setdefault(col, []).append(key)
    return sa.or_(*(key_in(idx_token.c[col], ks) for col, ks in by_col.items()))


def many_keys_in(col: sa.ColumnElement, ks: Sequence[int]) -> ColumnElement[bool]:
    """``col IN (...)`` for a possibly long list of integer keys, rendered inline (integers
    only, so no injection) rather than as one bound parameter each: an expansion may hold
    thousands of codes, past SQLite's and PostgreSQL's limits on bound parameters."""
    ks = list(dict.fromkeys(ks))
    if not ks:
        return sa.false()
    return col.in_(
        sa.bindparam("token_keys", ks, expanding=True, literal_execute=True, unique=True)
    )


def terminology_clause(
    target: Target, modifier: str, values: Sequence[str], codes: CodeSets | None
) -> PkSet:
    """``:in`` / ``:not-in`` (value: a ValueSet URL) and ``:below`` / ``:above`` (value:
    ``system|code``); comma-separated values OR."""
    if codes is None:
        raise NotSupported(
            f"{target.code}:{modifier} needs terminology services, which this server was "
            "started without"
        )
    pairs: list[tuple[str, str]] = []
    for v in values:
        if modifier in ("in", "not-in"):
            pairs.extend(codes.value_set_codes(unescape(v)))
            continue
        parts = split_escaped(v, "|")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise Invalid(f"{target.code}:{modifier} takes system|code, not {v!r}")
        system, code = unescape(parts[0]), unescape(parts[1])
        pairs.extend((system, c) for c in codes.hierarchy_codes(system, code, modifier))
    ks = [keys.combine(i, "sv", system, code) for i in target.idents for system, code in pairs]
    where = many_keys_in(idx_token.c.hash_sys_value, ks)
    if modifier == "not-in":
        return pk_not_in(idx_token, where)
    return pk_in(idx_token, where)


def clause(
    target: Target, modifier: str | None, values: Sequence[str], codes: CodeSets | None = None
) -> PkSet:
    if modifier in TERMINOLOGY_MODIFIERS:
        return terminology_clause(target, modifier, values, codes)
    idents = target.idents
    if modifier == "text":
        conds = []
        for v in values:
            t = normalise(unescape(v))
            conds.append(starts_with(idx_token.c.text_norm, t))
            conds.append(contains(idx_token.c.text_norm, " " + t))
        return pk_in(
            idx_token,
            identity_in(idx_token, idents),
            idx_token.c.text_norm.is_not(None),  # lets PostgreSQL use the partial index
            sa.or_(*conds),
        )
    if modifier == "of-type":
        ks = [of_type_key(i, v) for i in idents for v in values]
        return pk_in(idx_token, key_in(idx_token.c.hash_sys_value, ks))
    where = matching(idents, values)
    if modifier == "not":
        return pk_not_in(idx_token, where)
    return pk_in(idx_token, where)
