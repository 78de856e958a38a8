"""The search-to-SQL compiler (FHIR R4 search.html): a parsed query becomes one SQLAlchemy Core
``SELECT pk`` of the live resources of the searched type(s) that satisfy every criterion, with
bound parameters only.

- Each criterion is a ``PkSet``: usually ``SELECT res_pk FROM idx_<type> WHERE <keys/range>``;
  comma-separated values OR inside it; repeated parameters AND (``intersect``: the first set drives
  the query, the others become ``res_pk IN (...)`` / ``NOT IN (...)``).
- A chain ``subject:Patient.name=x`` is ``SELECT res_pk FROM idx_reference WHERE identity AND
  target_type = 'Patient' AND target_id IN (SELECT res_id FROM resource t WHERE t.res_type =
  'Patient' AND t.pk IN (<name=x>))``, recursively for longer chains.
- A reverse chain ``_has:Observation:patient:code=x`` is ``SELECT pk FROM resource WHERE res_id IN
  (SELECT target_id FROM idx_reference WHERE identity(Observation, patient) AND target_type =
  <this type> AND res_pk IN (<Observations with code=x>))``, nested for nested ``_has``.

Unknown parameters and modifiers are returned as ``Unsupported`` (the caller reports them, or
rejects the request under ``Prefer: handling=strict``); features this server knows but does not
implement (``near``; terminology modifiers when no ``terminology`` service is plugged in) raise
``NotSupported``; malformed values raise ``Invalid``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from resources.errors import Invalid
from resources.search import keys, special
from resources.search.clauses import HasParts, PkSet, Target, missing
from resources.search.definitions import SearchParam, SearchParameterRegistry
from resources.search.param_types import SEARCH_TYPES
from resources.search.parse import (
    HasLink,
    Include,
    Link,
    ParsedQuery,
    ResultParams,
    Unsupported,
    parse_query,
)
from resources.search.tables import idx_reference, idx_token
from resources.search.token import CodeSets
from resources.storage.schema import resource

MAX_CHAIN = 4  # links in one chain, and nested _has, at most

# What the caller may see of rows of one type, as conditions on an alias of ``resource``: applied
# to each chained target and each ``_has`` source (``resources.search.visibility.visible_in``).
Visible = Callable[[sa.FromClause, str], list[sa.ColumnElement]]


class _Unknown(Exception):
    """A parameter or modifier this server does not know: reported, not applied."""


@dataclass
class CompiledSearch:
    """``select``: ``SELECT pk`` of the matches, each once (unordered, unpaged).
    ``unsupported``: the parameters that were not applied, and why. ``result``: the parsed
    result-shaping parameters. ``types``: the resource types searched (None: all).
    ``criteria``: how many criteria were applied (0: ``select`` is every live resource).
    ``has_walk``: for a search of one type with a ``_has`` criterion, what reading its pages
    from that type's side needs."""

    select: sa.Select
    unsupported: list[Unsupported]
    result: ResultParams
    types: tuple[str, ...] | None
    criteria: int = 0
    has_walk: HasWalk | None = None
    # ``_contained=true|both`` applied: ``select`` holds containers (of any type) whose
    # contained resources of the searched type match (search.html#contained)
    contained: bool = False


@dataclass(frozen=True)
class HasWalk:
    """The first ``_has`` criterion of a search (``has``: its sources and reference identity),
    ``members``: ``SELECT pk`` of the matches without DISTINCT (for ``pk IN (...)`` tests), and
    ``others``: that of the other criteria alone (None: there are none)."""

    has: HasParts
    members: sa.Select
    others: sa.Select | None


@dataclass(frozen=True)
class SortIndex:
    """A sort key read from index rows: ``table.column`` of the rows with ``identity``."""

    table: sa.Table
    column: str
    identity: int
    desc: bool


def intersect(
    sets: Sequence[PkSet], types: Sequence[str] | None, *, distinct: bool = False
) -> sa.Select:
    """``SELECT pk`` of the resources in every set (AND of the criteria).

    The first positive set drives the query, so a search on indexed parameters never reads the
    ``resource`` table: an index row exists only for the current version of a live resource, and
    its identity key fixes the resource type. With only negated sets (or none), the live
    resources of the type(s) are the domain. ``distinct``: each pk once (for a result; inside
    ``IN (...)`` duplicates do not matter, and DISTINCT would keep PostgreSQL from probing the
    subquery's index row by row)."""
    positive = sorted((s for s in sets if not s.negated), key=lambda s: s.unique)
    negative = [s for s in sets if s.negated]
    if positive:
        driver = positive[0]
        stmt = driver.select
        col = stmt.selected_columns[0]
        stmt = stmt.with_only_columns(col.label("pk"))
        if distinct and not driver.unique:
            stmt = stmt.distinct()
    else:
        stmt = sa.select(resource.c.pk.label("pk")).where(resource.c.deleted.is_(False))
        if types is not None:
            stmt = stmt.where(
                resource.c.res_type == types[0]
                if len(types) == 1
                else resource.c.res_type.in_(list(types))
            )
        col = resource.c.pk
    # Subqueries never correlate: the same index table may appear at several levels.
    for s in positive[1:]:
        stmt = stmt.where(col.in_(s.select.correlate(None)))
    for s in negative:
        stmt = stmt.where(col.not_in(s.select.correlate(None)))
    return stmt.correlate(None)


class Compiler:
    def __init__(self, registry: SearchParameterRegistry, *, base_urls: Sequence[str] = ()) -> None:
        self.registry = registry
        self.base_urls = tuple(b.rstrip("/") for b in base_urls)
        # token :in / :not-in / :below / :above ask this (the application plugs it in)
        self.terminology: CodeSets | None = None
        self.visible: Visible | None = None
        self.contained = False  # a copy that compiles criteria on contained resources

    # -- entry points --------------------------------------------------------------------------
    def compile(
        self,
        res_type: str | None,
        query: Sequence[tuple[str, str]] | ParsedQuery,
        *,
        visible: Visible | None = None,
    ) -> CompiledSearch:
        """``visible``: the caller's security filter, applied to every resource a chain or a
        ``_has`` looks into, so that those look only at rows the caller may read."""
        if visible is not None:
            scoped = copy.copy(self)  # the shared compiler is never changed per request
            scoped.visible = visible
            return scoped._compile(res_type, query)
        return self._compile(res_type, query)

    def _compile(
        self, res_type: str | None, query: Sequence[tuple[str, str]] | ParsedQuery
    ) -> CompiledSearch:
        parsed = query if isinstance(query, ParsedQuery) else parse_query(query)
        unsupported = list(parsed.unsupported)
        if res_type is not None:
            self._check_type(res_type)
            types: tuple[str, ...] | None = (res_type,)
            if parsed.types is not None:
                unsupported.append(
                    Unsupported("_type", ",".join(parsed.types), "_type applies to system search")
                )
        elif parsed.types is not None:
            for t in parsed.types:
                self._check_type(t)
            types = tuple(parsed.types)
        else:
            types = None
        search_types = types if types is not None else tuple(self.registry.resource_types())
        sets: list[PkSet] = []
        for crit in parsed.criteria:
            values = tuple(v for v in crit.values if v != "")
            if not values:
                continue  # an empty value is ignored (search.html#errors)
            try:
                sets.append(self.criterion(search_types, crit.has, crit.path, values, 0))
            except _Unknown as exc:
                unsupported.append(Unsupported(crit.name, crit.raw, str(exc)))
        result, refused = self._check_includes(parsed.result)
        unsupported += refused
        for name, value in result.raw:
            refused_values = special.UNSUPPORTED_RESULT_VALUES.get(name)
            if refused_values is not None and value in refused_values[0]:
                unsupported.append(Unsupported(name, value, refused_values[1]))
        stmt = intersect(sets, types, distinct=True)
        walk = None
        first = next((s for s in sets if s.has is not None), None)
        if first is not None and first.has is not None:
            others = [s for s in sets if s is not first]
            walk = HasWalk(
                first.has, intersect(sets, types), intersect(others, types) if others else None
            )
        if result.contained in ("true", "both") and res_type is not None:
            inner, why = self._contained_select(res_type, parsed)
            if inner is None:
                unsupported.append(Unsupported("_contained", result.contained, why))
            else:
                if result.contained == "both":
                    both = sa.union(stmt, inner).subquery("both")
                    inner = sa.select(both.c[0].label("pk"))
                    if result.contained_type == "contained":
                        why = "_containedType=contained is supported with _contained=true only"
                        unsupported.append(Unsupported("_containedType", "contained", why))
                return CompiledSearch(
                    inner, unsupported, result, types, len(sets), None, contained=True
                )
        elif result.contained in ("true", "both"):
            why = "_contained needs a resource type (a type-level search)"
            unsupported.append(Unsupported("_contained", result.contained, why))
        if result.contained_type == "contained":  # only here: the contained ones that matched
            why = "_containedType=contained returns what a _contained=true search matched"
            unsupported.append(Unsupported("_containedType", "contained", why))
        return CompiledSearch(stmt, unsupported, result, types, len(sets), walk)

    def _contained_select(self, res_type: str, parsed: ParsedQuery) -> tuple[sa.Select | None, str]:
        """``SELECT pk`` of the containers whose contained ``res_type`` resources match the
        criteria (each on the rows ``Indexer`` writes under ``keys.contained_identity``), or
        None and why not. Simple criteria only: no chain, ``_has``, ``:missing`` or ``:not``
        (their sense within contained resources is not defined by R4), and at least one."""
        scoped = copy.copy(self)
        scoped.contained = True
        sets: list[PkSet] = []
        for crit in parsed.criteria:
            values = tuple(v for v in crit.values if v != "")
            if not values:
                continue
            if crit.has or len(crit.path) > 1:
                return None, f"{crit.name}: chains and _has are not searched in contained resources"
            try:
                sets.append(scoped._simple((res_type,), crit.path[0], values))
            except _Unknown as exc:
                if crit.path[0].code.startswith("_") or crit.modifier in ("missing", "not"):
                    return None, str(exc)
                continue  # unknown for the type itself: reported by the search of the type
        if not sets:
            return None, "_contained needs a criterion on the contained resources"
        return intersect(sets, None, distinct=True), ""

    def _check_includes(self, result: ResultParams) -> tuple[ResultParams, list[Unsupported]]:
        """``_include`` / ``_revinclude`` that name an unknown type, a parameter that is not a
        reference parameter of their source type, or an unknown target type are not applied:
        reported like an unknown parameter (refused under ``Prefer: handling=strict``)."""
        refused: list[Unsupported] = []

        def usable(kind: str, inc: Include) -> bool:
            reason = self._include_problem(inc)
            if reason is None:
                return True
            name = kind + (":iterate" if inc.iterate else "")
            value = ":".join(p for p in (inc.source, inc.param, inc.target) if p)
            if inc.source == "*":
                value = "*"
            refused.append(Unsupported(name, value, reason))
            return False

        include = [i for i in result.include if usable("_include", i)]
        revinclude = [i for i in result.revinclude if usable("_revinclude", i)]
        if not refused:
            return result, []
        return dataclasses.replace(result, include=include, revinclude=revinclude), refused

    def _include_problem(self, inc: Include) -> str | None:
        if inc.source == "*":
            return None
        if not self.registry.is_resource_type(inc.source):
            return f"{inc.source!r} is not a resource type this server knows"
        if inc.target is not None and not self.registry.is_resource_type(inc.target):
            return f"{inc.target!r} is not a resource type this server knows"
        if inc.param == "*":
            return None
        param = self.registry.get(inc.source, inc.param)
        if param is None:
            return f"unknown search parameter {inc.param!r} for {inc.source}"
        if param.type != "reference":
            return f"{inc.source}:{inc.param} is a {param.type} parameter, not a reference"
        return None

    def _check_type(self, res_type: str) -> None:
        if not self.registry.is_resource_type(res_type):
            raise Invalid(f"{res_type!r} is not a resource type this server knows")

    # -- one criterion ---------------------------------------------------------------------
    def criterion(
        self,
        res_types: tuple[str, ...],
        has: tuple[HasLink, ...],
        path: tuple[Link, ...],
        values: tuple[str, ...],
        depth: int,
    ) -> PkSet:
        if depth > MAX_CHAIN:
            raise Invalid(f"chains and _has are limited to {MAX_CHAIN} levels")
        if has:
            return self._has(res_types, has, path, values, depth)
        if len(path) > 1:
            return self._chain(res_types, path, values, depth)
        return self._simple(res_types, path[0], values)

    def _param(self, res_types: tuple[str, ...], code: str) -> SearchParam:
        found = [self.registry.get(t, code) for t in res_types]
        if any(p is None for p in found):
            missing_in = [t for t, p in zip(res_types, found, strict=True) if p is None]
            where = missing_in[0] if len(res_types) == 1 else f"{len(missing_in)} of the types"
            raise _Unknown(f"unknown search parameter {code!r} for {where}")
        first = found[0]
        assert first is not None
        if any(p is not None and p.type != first.type for p in found):
            raise _Unknown(f"{code!r} has different types on the types searched")
        return first

    def _target(self, res_types: tuple[str, ...], param: SearchParam) -> Target:
        key = keys.contained_identity if self.contained else keys.identity
        return Target(param, res_types, tuple(key(t, param.code) for t in res_types))

    def _simple(self, res_types: tuple[str, ...], link: Link, values: tuple[str, ...]) -> PkSet:
        code, modifier = link.code, link.modifier
        if self.contained and (code.startswith("_") or modifier in ("missing", "not")):
            shown = code + (f":{modifier}" if modifier else "")
            raise _Unknown(f"{shown} is not searched in contained resources")
        if code in special.UNSUPPORTED:
            raise _Unknown(special.UNSUPPORTED[code])
        if code == "_id":
            if modifier not in (None, *special.ID_MODIFIERS):
                raise _Unknown(f"modifier :{modifier} is not supported on _id")
            return special.id_clause(modifier, values, res_types)
        if code == "_list":
            if modifier is not None:
                raise _Unknown(f"modifier :{modifier} is not supported on _list")
            functional = [v for v in values if v.startswith("$")]
            if functional:
                if len(values) > 1:
                    raise Invalid("a functional list (_list=$...) is searched on its own")
                return self._functional_list(res_types, functional[0])
            return special.list_clause(values, res_types, self.visible)
        if code == "_lastUpdated":
            if modifier is not None:
                raise _Unknown(f"modifier :{modifier} is not supported on _lastUpdated")
            return special.last_updated_clause(values, res_types)
        param = self._param(res_types, code)
        stype = SEARCH_TYPES[param.type]
        if self.contained and param.type in ("composite", "special"):
            raise _Unknown(f"{param.type} {code!r} is not searched in contained resources")
        if modifier is not None and modifier not in stype.modifiers:
            if not (stype.type_modifiers and self._is_type_modifier(param, modifier)):
                raise _Unknown(f"modifier :{modifier} is not supported on {param.type} {code!r}")
        target = self._target(res_types, param)
        if modifier == "missing":
            if len(values) != 1:
                raise Invalid(":missing takes one value, true or false")
            # a type without index rows (special) has no value anywhere: any table answers
            table = stype.table if stype.table is not None else idx_token
            return missing(table, target.idents, values[0], res_types)
        return stype.clause(target, modifier, values, self)

    def _functional_list(self, res_types: tuple[str, ...], name: str) -> PkSet:
        """``_list=$current-...`` (R4 list.html#functional-lists): the list as criteria on each
        type it can hold (``special.FUNCTIONAL_LISTS``); a type it cannot hold selects nothing."""
        rules = special.FUNCTIONAL_LISTS.get(name)
        if rules is None:
            raise _Unknown(
                f"functional list {name!r} is not supported (supported: "
                f"{', '.join(sorted(special.FUNCTIONAL_LISTS))})"
            )
        parts = []
        for res_type in res_types:
            criteria = rules.get(res_type)
            if criteria is None:
                continue
            cond: list[sa.ColumnElement[bool]] = [resource.c.res_type == res_type]
            for code, accepted in criteria:
                found = self._simple((res_type,), Link(code, None), accepted)
                cond.append(resource.c.pk.in_(found.select))
            parts.append(sa.and_(*cond))
        return special.resource_set(res_types, sa.or_(*parts) if parts else sa.false())

    def _is_type_modifier(self, param: SearchParam, modifier: str) -> bool:
        """Any resource type: stored data does not always keep to the declared targets."""
        return self.registry.is_resource_type(modifier)

    # -- chains ----------------------------------------------------------------------------
    def _chain(
        self,
        res_types: tuple[str, ...],
        path: tuple[Link, ...],
        values: tuple[str, ...],
        depth: int,
    ) -> PkSet:
        first, rest = path[0], path[1:]
        param = self._param(res_types, first.code)
        if param.type != "reference":
            raise _Unknown(f"{first.code!r} is a {param.type} parameter and cannot be chained")
        if first.modifier is not None:
            if not self._is_type_modifier(param, first.modifier):
                raise _Unknown(f"{first.modifier!r} is not a target type of {first.code!r}")
            candidates = [first.modifier]
        else:
            candidates = list(param.target) or self.registry.resource_types()
        next_code = rest[0].code
        targets = [
            t
            for t in candidates
            if next_code in ("_id", "_lastUpdated") or self.registry.get(t, next_code) is not None
        ]
        if not targets:
            raise _Unknown(f"no target type of {first.code!r} has a search parameter {next_code!r}")
        ref = idx_reference.c
        idents = [keys.identity(t, param.code) for t in res_types]
        per_target = []
        for target_type in targets:
            inner = self.criterion((target_type,), (), rest, values, depth + 1)
            t = resource.alias()
            ids = sa.select(t.c.res_id).where(
                t.c.res_type == target_type,
                t.c.deleted.is_(False),
                t.c.pk.in_(intersect([inner], (target_type,))),
                *(self.visible(t, target_type) if self.visible is not None else ()),
            )
            per_target.append(
                sa.select(ref.res_pk).where(
                    ref.hash_identity == idents[0]
                    if len(idents) == 1
                    else ref.hash_identity.in_(idents),
                    ref.target_type == target_type,
                    ref.target_id.in_(ids.correlate(None)),
                )
            )
        if len(per_target) == 1:
            return PkSet(per_target[0])
        # One SELECT per target type, not an OR of them: each is an index lookup by target id,
        # where an OR made PostgreSQL filter every reference row of the parameter.
        return PkSet(sa.select(sa.union_all(*per_target).subquery().c[0]))

    def _has(
        self,
        res_types: tuple[str, ...],
        has: tuple[HasLink, ...],
        path: tuple[Link, ...],
        values: tuple[str, ...],
        depth: int,
    ) -> PkSet:
        link, rest = has[0], has[1:]
        self._check_type(link.res_type)
        param = self.registry.get(link.res_type, link.ref)
        if param is None or param.type != "reference":
            raise _Unknown(f"{link.res_type} has no reference search parameter {link.ref!r}")
        inner = self.criterion((link.res_type,), rest, path, values, depth + 1)
        sources = intersect([inner], (link.res_type,))
        if self.visible is not None:
            conds = self.visible(resource, link.res_type)
            if conds:
                t = resource.alias()
                sources = (
                    sa.select(t.c.pk)
                    .where(t.c.pk.in_(sources), *self.visible(t, link.res_type))
                    .correlate(None)
                )
        ref = idx_reference.c
        identity = keys.identity(link.res_type, param.code)
        out = []
        for res_type in res_types:
            ids = sa.select(ref.target_id).where(
                ref.hash_identity == identity,
                ref.target_type == res_type,
                ref.res_pk.in_(sources),
            )
            out.append(
                sa.select(resource.c.pk).where(
                    resource.c.res_type == res_type,
                    resource.c.deleted.is_(False),
                    resource.c.res_id.in_(ids.correlate(None)),
                )
            )
        stmt = out[0] if len(out) == 1 else sa.select(sa.union_all(*out).subquery().c[0])
        parts = HasParts(sources, identity) if len(res_types) == 1 else None
        return PkSet(stmt, unique=True, has=parts)

    # -- _sort -----------------------------------------------------------------------------
    def sort_by(
        self,
        res_type: str | None,
        sort: str | Sequence[tuple[str, bool]],
        pk: sa.ColumnElement | None = None,
    ) -> list[sa.ColumnElement]:
        """ORDER BY clauses for ``_sort`` (``"-date,_id"`` or ``[("date", True), ...]``), for a
        query whose rows carry the resource primary key ``pk`` (default ``resource.pk``, i.e. a
        query FROM ``resource``): resource columns for ``_id`` and ``_lastUpdated``, otherwise
        the lowest (ascending) or highest (descending) indexed value of the parameter; resources
        without a value come last; the primary key breaks ties."""
        keys_ = parse_sort(sort)
        pk = resource.c.pk if pk is None else pk
        types = (res_type,) if res_type else tuple(self.registry.resource_types())
        clauses: list[sa.ColumnElement] = []
        for code, desc in keys_:
            expr = self._sort_expr(types, code, desc, pk)
            clauses.append(expr.desc().nulls_last() if desc else expr.asc().nulls_last())
        clauses.append(pk.asc())
        return clauses

    def sort_keys(
        self,
        res_type: str | None,
        sort: str | Sequence[tuple[str, bool]],
        pk: sa.ColumnElement | None = None,
    ) -> list[tuple[sa.ColumnElement, bool]]:
        """``(expression, descending)`` per ``_sort`` key, without the tie-break, for keyset
        paging (the caller selects the expressions too, to build cursors)."""
        pk = resource.c.pk if pk is None else pk
        types = (res_type,) if res_type else tuple(self.registry.resource_types())
        return [(self._sort_expr(types, code, desc, pk), desc) for code, desc in parse_sort(sort)]

    def ordered(
        self, res_type: str | None, select: sa.Select, sort: str | Sequence[tuple[str, bool]]
    ) -> sa.Select:
        """``SELECT pk`` of the matches of ``select`` (from ``compile``), sorted by ``_sort``
        (then by pk); add ``.limit()`` / ``.offset()`` for a page."""
        keys_ = parse_sort(sort)
        matches = select.subquery("matches")
        stmt = sa.select(matches.c.pk)
        pk: sa.ColumnElement = matches.c.pk
        if any(code in ("_id", "_lastUpdated") for code, _desc in keys_):
            stmt = stmt.join_from(matches, resource, resource.c.pk == matches.c.pk)
            pk = resource.c.pk
        return stmt.order_by(*self.sort_by(res_type, keys_, pk=pk))

    def sort_index(
        self, res_type: str | None, sort: str | Sequence[tuple[str, bool]]
    ) -> SortIndex | None:
        """How to read a one-key ``_sort`` on a date or number parameter straight from its
        index rows in sort order (``idx_date`` / ``idx_number`` have B-trees on
        ``(hash_identity, high, low)`` and ``(hash_identity, low, high)``); None for any other
        sort. A resource's sort value is the same as ``sort_keys`` gives: its highest ``high``
        (descending) or lowest ``low`` (ascending)."""
        keys_ = parse_sort(sort)
        if res_type is None or len(keys_) != 1:
            return None
        code, desc = keys_[0]
        param = self.registry.get(res_type, code)
        stype = SEARCH_TYPES[param.type] if param is not None else None
        if stype is None or not stype.sort_walk or stype.table is None:
            return None
        table = stype.table
        return SortIndex(table, "high" if desc else "low", keys.identity(res_type, code), desc)

    def _sort_expr(
        self, types: tuple[str, ...], code: str, desc: bool, pk: sa.ColumnElement
    ) -> sa.ColumnElement:
        if code in ("_id", "_lastUpdated"):
            col = resource.c.res_id if code == "_id" else resource.c.last_updated
            if pk is resource.c.pk:
                return col
            return sa.select(col).where(resource.c.pk == pk).scalar_subquery()
        try:
            param = self._param(types, code)
        except _Unknown as exc:
            raise Invalid(f"cannot sort by {code!r}: {exc}") from exc
        stype = SEARCH_TYPES[param.type]
        table, columns = stype.table, stype.sort
        if table is None or columns is None:
            raise Invalid(f"cannot sort by the {param.type} parameter {code!r}")
        col = table.c[columns[1] if desc else columns[0]]
        agg = sa.func.max(col) if desc else sa.func.min(col)
        idents = [keys.identity(t, code) for t in types]
        return (
            sa.select(agg)
            .where(
                table.c.res_pk == pk,
                table.c.hash_identity == idents[0]
                if len(idents) == 1
                else table.c.hash_identity.in_(idents),
            )
            .scalar_subquery()
        )


def parse_sort(sort: str | Sequence[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """``"-date,_id"`` → ``[("date", True), ("_id", False)]``."""
    if not isinstance(sort, str):
        return list(sort)
    out = []
    for k in sort.split(","):
        k = k.strip()
        if k:
            out.append((k[1:], True) if k.startswith("-") else (k, False))
    return out
