"""reference parameters (FHIR R4 search.html#reference).

Index: a relative reference ``Type/id`` (or ``Type/id/_history/n``) as target type, id and
version, so chains and ``_has`` join on ``resource(res_type, res_id)``; an absolute URL or
``urn:`` reference, and a canonical (``url|version``), as its URL (plus the type when the URL ends
in ``Type/id``). References that start with one of the server's own base URLs count as relative.
Contained references (``#id``) are not indexed. ``Reference.identifier`` is indexed as a token
under the parameter's "identifier" key, for ``:identifier``.

Search: ``Type/id``, ``id`` (any type), an absolute URL (canonical ``url|version`` too), the
``:Type`` modifier, ``:identifier`` (a token search on Reference.identifier), ``:missing``.
Chains and ``_has`` are built by the compiler on top of ``idx_reference``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import Invalid, NotSupported
from resources.search import keys, token
from resources.search.clauses import PkSet, Target, pk_in
from resources.search.extract import Value, reference_type
from resources.search.parse import unescape
from resources.search.tables import URI_LEN, idx_reference

MODIFIERS = frozenset({"identifier", "missing", "above", "below"})  # plus resource types

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def identifier_identity(ident: int) -> int:
    """The key under which ``Reference.identifier`` of a parameter is indexed as a token."""
    return keys.combine(ident, "identifier")


def split_local(ref: str) -> tuple[str, str, str | None] | None:
    """``Type/id`` or ``Type/id/_history/v`` → (type, id, version)."""
    parts = ref.split("/")
    if len(parts) == 2:
        typ, rid, version = parts[0], parts[1], None
    elif len(parts) == 4 and parts[2] == "_history":
        typ, rid, version = parts[0], parts[1], parts[3]
    else:
        return None
    if not _TYPE.match(typ) or not _ID.match(rid):
        return None
    return typ, rid, version


def _strip_base(ref: str, bases: Sequence[str]) -> str:
    for base in bases:
        if ref.startswith(base) and ref[len(base) : len(base) + 1] == "/":
            return ref[len(base) + 1 :]
    return ref


def _is_absolute(ref: str) -> bool:
    return "://" in ref or ref.startswith(("urn:", "http:", "https:"))


def _row(
    ident: int, typ: str | None, rid: str | None, version: str | None, url: str | None
) -> tuple:
    hurl = keys.combine(ident, "u", url) if url else None
    return (idx_reference, (ident, typ, rid, version, url[:URI_LEN] if url else None, hurl))


def reference_row(ident: int, ref: str, bases: Sequence[str], *, canonical: bool) -> tuple | None:
    """The index row of one reference string (or None when it is not indexed)."""
    if not ref or ref.startswith("#"):
        return None
    ref = _strip_base(ref, bases)
    version = None
    if canonical and "|" in ref:
        ref, version = ref.split("|", 1)
    if _is_absolute(ref):
        url = ref
        cut = url.find("/_history/")
        if cut >= 0 and not canonical:
            version = url[cut + len("/_history/") :] or None
            url = url[:cut]
        return _row(ident, reference_type({"reference": ref}), None, version, url)
    local = split_local(ref)
    if local is None:
        return _row(ident, None, None, version, ref) if canonical else None
    return _row(ident, local[0], local[1], local[2] or version, None)


def index(ident: int, values: list[Value], out: list, bases: Sequence[str] = ()) -> None:
    for typ, value in values:
        if isinstance(value, str):
            row = reference_row(ident, value, bases, canonical=typ != "uri")
            if row is not None:
                out.append(row)
        elif isinstance(value, dict) and "resourceType" not in value:
            ref = value.get("reference")
            if isinstance(ref, str):
                row = reference_row(ident, ref, bases, canonical=False)
                if row is None and "/" not in ref and isinstance(value.get("type"), str):
                    row = reference_row(ident, f"{value['type']}/{ref}", bases, canonical=False)
                if row is not None:
                    out.append(row)
            identifier = value.get("identifier")
            if isinstance(identifier, dict):
                token.identifier_rows(identifier_identity(ident), identifier, out)


def value_condition(
    ident: int, value: str, type_modifier: str | None, bases: Sequence[str]
) -> ColumnElement[bool]:
    """The WHERE on idx_reference for one search value."""
    t = idx_reference.c
    ref = _strip_base(unescape(value), bases)
    if not ref:
        raise Invalid("an empty reference search value")
    if _is_absolute(ref):
        version = None
        if "|" in ref:
            ref, version = ref.split("|", 1)
        cond = t.hash_url == keys.combine(ident, "u", ref)
        if version:
            cond = sa.and_(cond, t.target_version == version)
        if type_modifier:
            cond = sa.and_(cond, t.target_type == type_modifier)
        return cond
    local = split_local(ref.split("|", 1)[0])
    if local is not None:
        typ, rid, _version = local
        if type_modifier and type_modifier != typ:
            return sa.false()
        return sa.and_(t.hash_identity == ident, t.target_id == rid, t.target_type == typ)
    if "/" in ref:
        raise Invalid(f"{value!r} is not a reference (Type/id, id, or an absolute URL)")
    cond = sa.and_(t.hash_identity == ident, t.target_id == ref)
    if type_modifier:
        cond = sa.and_(cond, t.target_type == type_modifier)
    return cond


def clause(
    target: Target,
    modifier: str | None,
    values: Sequence[str],
    bases: Sequence[str] = (),
) -> PkSet:
    if modifier in ("above", "below"):
        raise NotSupported(
            f"{target.code}:{modifier} (hierarchical canonical references) is not supported yet"
        )
    if modifier == "identifier":
        idents = tuple(identifier_identity(i) for i in target.idents)
        return token.clause(Target(target.param, target.res_types, idents), None, values)
    type_modifier = modifier  # a resource type, validated by the compiler
    conds = [value_condition(i, v, type_modifier, bases) for i in target.idents for v in values]
    return pk_in(idx_reference, sa.or_(*conds))
