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

``:below`` / ``:above`` (search.html "reference", hierarchical targets): ``location:below=
Location/42`` matches references to Location 42 and to every Location below it, ``:above`` to 42
and every Location above it. The hierarchy of a type is its one reference parameter that
targets that type alone (Location ``partof``, Organization ``partof``, Task ``part-of``,
Specimen ``parent``, ...: :func:`hierarchy_param`); it is walked in SQL (a recursive
``WITH``, cycles ending it) through the index rows, over the resources the caller may read.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import Invalid, NotSupported
from resources.search import keys, token
from resources.search.clauses import PkSet, Target, identity_in, pk_in
from resources.search.definitions import SearchParam, SearchParameterRegistry
from resources.search.extract import Value, reference_type
from resources.search.parse import unescape
from resources.search.tables import URI_LEN, idx_reference
from resources.storage.schema import resource

MODIFIERS = frozenset({"identifier", "missing", "above", "below"})  # plus resource types

_CTE_NAMES = itertools.count(1)  # each hierarchy walk its own WITH name in one statement
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


def hierarchy_param(registry: SearchParameterRegistry, res_type: str) -> SearchParam:
    """The parameter that makes ``res_type`` a hierarchy: its only reference parameter whose
    one target is ``res_type`` itself (Location ``partof``). Raises NotSupported otherwise."""
    found = [
        p
        for p in registry.for_type(res_type).values()
        if p.type == "reference" and tuple(p.target) == (res_type,)
    ]
    if len(found) != 1:
        why = "none" if not found else ", ".join(sorted(p.code for p in found))
        raise NotSupported(
            f":above / :below need a hierarchy of {res_type}: a reference search parameter of "
            f"{res_type} to {res_type} alone (found: {why})"
        )
    return found[0]


def _hierarchy_target(
    target: Target, value: str, registry: SearchParameterRegistry, bases: Sequence[str]
) -> tuple[str, str]:
    """The (type, id) a ``:below`` / ``:above`` value names."""
    ref = _strip_base(unescape(value), bases)
    if _is_absolute(ref):
        raise NotSupported(
            f"{target.code}:above / :below walk hierarchies of resources on this server; "
            f"{value!r} is an absolute URL of another"
        )
    local = split_local(ref)
    if local is not None:
        return local[0], local[1]
    if "/" in ref or not _ID.match(ref):
        raise Invalid(f"{value!r} is not a reference (Type/id or id)")
    if len(target.param.target) != 1:
        raise Invalid(
            f"{target.code}:above / :below with a bare id: give Type/id ({target.code} may "
            f"refer to {len(target.param.target) or 'any'} types)"
        )
    return target.param.target[0], ref


def hierarchy_clause(
    target: Target,
    modifier: str,
    values: Sequence[str],
    registry: SearchParameterRegistry,
    bases: Sequence[str] = (),
    visible: Callable[[sa.FromClause, str], list[ColumnElement[bool]]] | None = None,
) -> PkSet:
    """``:below`` / ``:above`` on a reference parameter: the references to the named resource
    and to those below (above) it in its type's hierarchy."""
    t = idx_reference.c
    conds = []
    for value in values:
        res_type, res_id = _hierarchy_target(target, value, registry, bases)
        ident = keys.identity(res_type, hierarchy_param(registry, res_type).code)
        start = sa.select(sa.cast(sa.literal(res_id), sa.Text).label("id")).cte(
            f"hierarchy_{next(_CTE_NAMES)}", recursive=True
        )
        walked = start.alias()
        x, r = idx_reference.alias(), resource.alias()
        shown = visible(r, res_type) if visible is not None else []
        joined = x.join(r, r.c.pk == x.c.res_pk)
        if modifier == "below":  # the resources whose parent is already in the set
            step = (
                sa.select(sa.cast(r.c.res_id, sa.Text))
                .select_from(joined)
                .where(
                    x.c.hash_identity == ident,
                    x.c.target_type == res_type,
                    x.c.target_id == walked.c.id,
                    r.c.res_type == res_type,
                    *shown,
                )
            )
        else:  # the parents of the resources already in the set
            step = (
                sa.select(sa.cast(x.c.target_id, sa.Text))
                .select_from(joined)
                .where(
                    r.c.res_type == res_type,
                    r.c.res_id == walked.c.id,
                    x.c.hash_identity == ident,
                    x.c.target_type == res_type,
                    *shown,
                )
            )
        tree = start.union(step)
        conds.append(
            sa.and_(
                identity_in(idx_reference, target.idents),
                t.target_type == res_type,
                t.target_id.in_(sa.select(tree.c.id)),
            )
        )
    return pk_in(idx_reference, sa.or_(*conds))


def clause(
    target: Target,
    modifier: str | None,
    values: Sequence[str],
    bases: Sequence[str] = (),
    registry: SearchParameterRegistry | None = None,
    visible: Callable[[sa.FromClause, str], list[ColumnElement[bool]]] | None = None,
) -> PkSet:
    if modifier in ("above", "below"):
        if registry is None:
            raise NotSupported(f"{target.code}:{modifier} needs the search parameter registry")
        return hierarchy_clause(target, modifier, values, registry, bases, visible)
    if modifier == "identifier":
        idents = tuple(identifier_identity(i) for i in target.idents)
        return token.clause(Target(target.param, target.res_types, idents), None, values)
    type_modifier = modifier  # a resource type, validated by the compiler
    conds = [value_condition(i, v, type_modifier, bases) for i in target.idents for v in values]
    return pk_in(idx_reference, sa.or_(*conds))
