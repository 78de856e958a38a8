"""Running a search (FHIR R4 search.html): criteria compiled by ``resources.search``, then sort,
keyset paging, ``_include``/``_revinclude``, ``_total``, ``_summary``/``_elements``, and the
searchset Bundle.

Paging is by keyset: the ``_page`` cursor holds the sort values and primary key of the last row
returned, and the next page continues strictly after them, so rows written or deleted while a
client pages never shift or repeat a page (no OFFSET). Unknown or unsupported parameters are
reported in an OperationOutcome entry (``search.mode = outcome``), or rejected with 400 under
``Prefer: handling=strict``.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa

from resources.errors import Invalid, Issue
from resources.search import CompiledSearch, keys
from resources.search.contained_match import matching_contained
from resources.search.parse import ParsedQuery, parse_query
from resources.search.shaping import select_elements, summarize
from resources.search.tables import idx_reference
from resources.search.visibility import (
    HIDDEN_TYPES,
    Security,
    compartment_members,
    secured,
    unreleased,
    visible_in,
)
from resources.storage.bounds import INT8_MAX
from resources.storage.bundles import searchset_bundle
from resources.storage.repository import Unit
from resources.storage.schema import resource
from resources.storage.store import StoredJSON

__all__ = [
    "SearchRequest",
    "Security",
    "compartment_members",
    "is_member",
    "is_unreleased",
    "run_search",
]

log = logging.getLogger("hearth.search")

INCLUDE_LIMIT = 1000  # included resources per page, beyond which an outcome says so
ITERATE_DEPTH = 4  # rounds of _include:iterate
# A sorted search with at least this many matches walks the sort parameter's index in order
# (``_index_page``); fewer matches are sorted after they are found (the general query).
INDEX_WALK_MIN = 5000
INDEX_WALK_MAX = 200_000  # index rows one walk reads at most before leaving it to the general query
# An unsorted search with a ``_has`` whose referring resources are at least HAS_JOIN_MIN walks
# the searched type's rows in primary-key order (``_pk_page``), testing each row by index probes
# from HAS_WALK_MIN on; fewer are followed from their side (the general query).
HAS_JOIN_MIN = 2000
HAS_WALK_MIN = 5000
PK_WALK_MAX = (
    50_000  # rows one primary-key walk reads at most before leaving it to the general query
)


@dataclass
class SearchRequest:
    """A search as asked: type (None for system search), the query pairs, and options.
    ``parsed``: the query, parsed once here (``Invalid`` on a malformed result parameter) and
    handed down to the compiler; ``explain`` is its ``_explain=true``."""

    res_type: str | None
    query: list[tuple[str, str]]
    default_count: int = 20
    max_count: int = 1000
    strict: bool = False
    compartment: tuple[str, str] | None = None  # ("Patient", "123") for Patient/123/Observation
    path: str = ""  # request path below the FHIR base, for links
    slow_ms: float = 500.0
    extra_issues: list[Issue] = field(default_factory=list)
    security: Security | None = None  # what the caller may see; applies to includes too
    # The Bundle carries resources that need no shaping as their stored JSON text
    # (``orjson.Fragment``), for a caller that only dumps it with orjson (the HTTP response).
    raw: bool = False
    parsed: ParsedQuery = field(init=False)

    def __post_init__(self) -> None:
        self.parsed = parse_query(self.query)

    @property
    def explain(self) -> bool:
        return self.parsed.explain


def _encode(values: list, pk: int, *, backward: bool = False) -> str:
    """A ``_page`` cursor: the rows after (values, pk) in the search's order, or with
    ``backward`` the ``count`` rows just before them (the ``previous`` link)."""
    cursor: dict = {"k": [_jsonable(v) for v in values], "pk": pk}
    if backward:
        cursor["b"] = 1
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


# The ``last`` link's cursor: the last ``count`` rows (a backward page from the end).
LAST_CURSOR = base64.urlsafe_b64encode(orjson.dumps({"last": 1})).decode().rstrip("=")


def _direction(cursor: str | None) -> str:
    """``forward`` (no cursor, or a ``next`` one), ``backward`` (``previous``) or ``last``."""
    if not cursor:
        return "forward"
    if cursor == LAST_CURSOR:
        return "last"
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        return "forward"  # _decode reports it
    return "backward" if isinstance(raw, dict) and raw.get("b") == 1 else "forward"


def _jsonable(value):  # type: ignore[no-untyped-def]
    if isinstance(value, datetime):
        return {"ts": value.isoformat()}
    return value


def _decode(cursor: str, n_keys: int) -> tuple[list, int]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values = [datetime.fromisoformat(v["ts"]) if isinstance(v, dict) else v for v in raw["k"]]
        if len(values) != n_keys:
            raise ValueError("cursor does not fit this _sort")
        pk = raw["pk"]
        if not isinstance(pk, int) or not 0 <= pk <= INT8_MAX:
            raise ValueError("cursor key out of range")
        for v in values:
            if isinstance(v, datetime):
                v.astimezone(UTC)  # OverflowError at the ends of the calendar
            elif isinstance(v, str) and "\x00" in v:
                raise ValueError("NUL in a cursor value")
            elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT8_MAX:
                raise ValueError("cursor value out of range")
        return values, pk
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise Invalid(
            f"the paging cursor {cursor!r} is not one this server issued for this search"
        ) from exc


def _before(keys_: list[tuple[sa.ColumnElement, bool]], values: list, pk: int) -> sa.ColumnElement:
    """Rows strictly before (values, pk) in ORDER BY k1 [DESC] NULLS LAST, ..., pk ASC."""
    ors = []
    eq: list[sa.ColumnElement] = []
    for (expr, desc), v in zip(keys_, values, strict=True):
        if v is not None:
            ors.append(sa.and_(*eq, expr > v if desc else expr < v))
            eq.append(expr == v)
        else:
            ors.append(sa.and_(*eq, expr.is_not(None)))  # a value sorts before no value
            eq.append(expr.is_(None))
    ors.append(sa.and_(*eq, resource.c.pk < pk))
    return sa.or_(*ors)


def _after(keys_: list[tuple[sa.ColumnElement, bool]], values: list, pk: int) -> sa.ColumnElement:
    """Rows strictly after (values, pk) in ORDER BY k1 [DESC] NULLS LAST, ..., pk ASC."""
    ors = []
    eq: list[sa.ColumnElement] = []
    for (expr, desc), v in zip(keys_, values, strict=True):
        if v is not None:
            beyond = sa.or_(expr < v if desc else expr > v, expr.is_(None))
            ors.append(sa.and_(*eq, beyond))
            eq.append(expr == v)
        else:
            eq.append(expr.is_(None))
    ors.append(sa.and_(*eq, resource.c.pk > pk))
    return sa.or_(*ors)


def run_search(unit: Unit, req: SearchRequest, *, base: str) -> dict:
    """Execute ``req`` and return the searchset Bundle."""
    engine = unit.repo.search
    started = time.perf_counter()
    query = req.parsed.pairs  # without _page and _explain
    # Chains and _has see only what the caller may read: a criterion on a row it cannot read
    # matches as if the row did not exist.
    compiled = engine.compile(req.res_type, req.parsed, visible=visible_in(req.security))
    result = compiled.result
    if compiled.unsupported and req.strict:
        # Under handling=strict an unknown parameter is the request's error, not a warning
        # (R4 search.html#errors): the issues say so with severity ``error``.
        raise Invalid(
            "unknown or unsupported search parameters (Prefer: handling=strict)",
            [
                dataclasses.replace(i, severity="error")
                for i in req.extra_issues
                + [
                    Issue("not-supported", f"parameter {u.name!r} refused: {u.reason}")
                    for u in compiled.unsupported
                ]
            ],
        )
    issues = list(req.extra_issues) + [
        Issue("not-supported", f"parameter {u.name!r} ignored: {u.reason}", severity="warning")
        for u in compiled.unsupported
    ]
    count = req.default_count if result.count is None else min(result.count, req.max_count)
    summary = result.summary
    # ``compiled.select`` yields matching primary keys (its FROM is the compiler's business);
    # join it to ``resource`` so sort keys and the keyset condition can refer to resource.pk.
    matched = compiled.select.subquery("matched")
    base_stmt = sa.select(resource.c.pk).select_from(
        matched.join(resource, resource.c.pk == list(matched.c)[0])
    )
    # ``_contained``: the matches are containers of any type, so the type-dependent shortcuts
    # below (security decided by the type, the fast pages that walk the type's rows) are off.
    contained = compiled.contained
    if req.compartment is not None:
        if contained:
            raise Invalid("_contained is not supported in a compartment search")
        base_stmt = base_stmt.where(_in_compartment(unit, req.res_type, *req.compartment))
    if req.security is not None:
        base_stmt = base_stmt.where(*_secured(req.security, None if contained else req.res_type))
    sort_keys = engine.sort_keys(req.res_type, result.sort) if result.sort else []
    cursor = req.parsed.page

    total = None
    if req.explain:
        return _explain(unit, base_stmt, base)
    # ``_count=0`` asks for the count alone (R4 search.html#count): it has ``total`` unless
    # ``_total=none`` says otherwise.
    zero = count == 0 and result.total is None
    if result.total in ("accurate", "estimate") or summary == "count" or zero:
        # The matches themselves when the join to ``resource`` filters nothing (no compartment,
        # the type visible as such): a count of index rows then needs no resource row.
        plain = (
            req.compartment is None
            and req.res_type is not None
            and not contained
            and _type_visible(req)
        )
        counted = compiled.select if plain else base_stmt
        total = _count(unit, counted, estimate=result.total == "estimate")
    page: list[StoredJSON] = []
    next_values = prev_values = None
    direction = _direction(cursor)
    if summary != "count" and count > 0:
        rows: Sequence[sa.Row] | None
        if direction != "forward":
            back = _backward_page(unit, base_stmt, sort_keys, cursor, direction, count)
            if len(back) > count:  # rows before this page: ``previous`` ends at its first
                prev_values = (list(back[count - 1][1:]), back[count - 1][0])
            rows = back[:count][::-1]
            if rows and direction == "backward":  # what the cursor was made from follows
                next_values = (list(rows[-1][1:]), rows[-1][0])
        else:
            if contained:
                rows = None
            elif sort_keys:
                rows = _index_page(unit, req, compiled, cursor, count)
            else:
                rows = _pk_page(unit, req, compiled, cursor, count)
            if (
                rows is None
                and not contained
                and not sort_keys
                and req.compartment is None
                and _type_visible(req)
            ):
                rows = _plain_page(unit, req, compiled, cursor, count)
            if rows is None:
                stmt = base_stmt.add_columns(*(e for e, _ in sort_keys))
                if cursor:
                    values, after_pk = _decode(cursor, len(sort_keys))
                    stmt = stmt.where(_after(sort_keys, values, after_pk))
                order = [e.desc().nulls_last() if d else e.asc().nulls_last() for e, d in sort_keys]
                stmt = stmt.order_by(*order, resource.c.pk.asc()).limit(count + 1)
                rows = unit.conn.execute(stmt).all()
            if len(rows) > count:
                last = rows[count - 1]
                next_values = (list(last[1:]), last[0])
            if cursor and rows:  # a page after the first: the rows before it are a page back
                prev_values = (list(rows[0][1:]), rows[0][0])
            rows = rows[:count]
        page = unit.read_json(pks=[r[0] for r in rows])
    includes, inc_issues = _includes(unit, page, result.include, result.revinclude, req.security)
    issues += inc_issues
    shown = page
    if summary and summary != "count":
        shown = [_with(s, summarize(s.content, summary)) for s in page]
    elif result.elements:
        shown = [_with(s, select_elements(s.content, result.elements)) for s in page]
    own_entries = None
    if contained and result.contained_type == "contained" and result.contained == "true":
        # the matching contained resources themselves, each under its container's URL
        criteria = [(c.name, c.raw) for c in req.parsed.criteria]
        assert req.res_type is not None  # _contained needs a type (the compiler says so)
        found = matching_contained(
            engine, req.res_type, criteria, [(s.res_type, s.res_id, s.content) for s in page]
        )
        own_entries = []
        for m in found:
            body = m.resource
            if summary and summary != "count":
                body = summarize(body, summary)
            elif result.elements:
                body = select_elements(body, result.elements)
            own_entries.append((m.full_url(base), body))
    path = req.path
    applied = _applied(query, compiled.unsupported)
    # ``first``: the search as applied, without a cursor; ``self`` adds this page's cursor;
    # ``next`` continues after this page's last row, ``previous`` ends before its first row
    # (a backward cursor) and ``last`` is the last ``count`` rows (search.html#paging).
    first_url = f"{base}/{path}" + (f"?{urlencode(applied)}" if applied else "")
    self_url = first_url
    if cursor:
        self_url = f"{base}/{path}?{urlencode([*applied, ('_page', cursor)])}"
    next_url = None
    if next_values is not None:
        next_url = f"{base}/{path}?{urlencode([*applied, ('_page', _encode(*next_values))])}"
    prev_url = last_url = None
    if prev_values is not None:
        before = _encode(*prev_values, backward=True)
        prev_url = f"{base}/{path}?{urlencode([*applied, ('_page', before)])}"
    if next_url is not None:
        last_url = f"{base}/{path}?{urlencode([*applied, ('_page', LAST_CURSOR)])}"
    elapsed = (time.perf_counter() - started) * 1000
    if elapsed > req.slow_ms:
        # parameter names only: the values are what was searched for (names, identifiers)
        names = ",".join(sorted({k for k, _ in req.query}))
        log.warning("slow search %.0f ms: %s with %s", elapsed, path, names or "no parameters")
    outcome = (
        {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}
        if issues
        else None
    )
    return searchset_bundle(
        base,
        shown,
        includes=includes,
        self_url=self_url,
        first_url=first_url,
        next_url=next_url,
        prev_url=prev_url,
        last_url=last_url,
        total=total,
        outcome=outcome,
        raw=req.raw,
        match_entries=own_entries,
    )


def _backward_page(
    unit: Unit,
    base_stmt: sa.Select,
    sort_keys: list[tuple[sa.ColumnElement, bool]],
    cursor: str | None,
    direction: str,
    count: int,
) -> list[sa.Row]:
    """The ``count + 1`` rows before a ``previous`` cursor (or the last ones, for ``last``),
    nearest first: the general query in the reverse order."""
    stmt = base_stmt.add_columns(*(e for e, _ in sort_keys))
    if direction == "backward" and cursor:
        values, before_pk = _decode(cursor, len(sort_keys))
        stmt = stmt.where(_before(sort_keys, values, before_pk))
    order = [e.asc().nulls_first() if d else e.desc().nulls_first() for e, d in sort_keys]
    stmt = stmt.order_by(*order, resource.c.pk.desc()).limit(count + 1)
    return list(unit.conn.execute(stmt).all())


def _index_page(
    unit: Unit, req: SearchRequest, compiled: CompiledSearch, cursor: str | None, count: int
) -> Sequence[sa.Row] | None:
    """A page of a search sorted by one date or number parameter, read by walking that
    parameter's index rows in sort order from the cursor, so page 50 costs what page 1 costs;
    rows ``(pk, sort value)`` as the general query returns them, ``count + 1`` of them.

    The walk reads the next ``n`` index rows in (value, pk) order -- an index range scan that
    stops after ``n`` rows -- and keeps those that give their resource its sort value (its
    highest ``high`` descending, lowest ``low`` ascending: one lookup per row by the
    ``(res_pk, hash_identity)`` index) and, with criteria, those among the matches; if fewer
    than ``count + 1`` remain, ``n`` grows. Index rows exist only for live current resources, so
    without criteria the walk needs nothing else; with criteria it pays only when the matches
    are many (``INDEX_WALK_MIN``; a bounded count decides). None -- the general query runs --
    when the sort is not of that kind, for compartment searches and security filters that
    depend on the row, on the pages of resources without a value (they come last), and once
    the walk runs out of rows (the general query then finishes the page with those)."""
    spec = unit.repo.search.sort_index(req.res_type, compiled.result.sort)
    if spec is None or req.compartment is not None or not _type_visible(req):
        return None
    values, after_pk = _decode(cursor, 1) if cursor else ([None], 0)
    if cursor and values[0] is None:
        return None
    conn = unit.conn
    if compiled.criteria:
        probe = compiled.select.limit(INDEX_WALK_MIN).subquery()
        found = conn.execute(sa.select(sa.func.count()).select_from(probe)).scalar_one()
        if found < INDEX_WALK_MIN:
            return None
    table, desc = spec.table, spec.desc
    col = table.c[spec.column]
    walk = sa.select(table.c.res_pk, col.label("v")).where(table.c.hash_identity == spec.identity)
    if cursor:
        v = values[0]
        walk = walk.where(
            col <= v if desc else col >= v,
            sa.or_(col < v if desc else col > v, table.c.res_pk > after_pk),
        )
    walk = walk.order_by(col.desc() if desc else col.asc(), table.c.res_pk.asc())
    other = table.alias("sort_other")
    n = (count + 1) * (8 if compiled.criteria else 2)
    while n <= INDEX_WALK_MAX:
        rows_t = walk.limit(n).subquery("walk")
        best = (
            sa.select(sa.func.max(other.c.high) if desc else sa.func.min(other.c.low))
            .where(other.c.res_pk == rows_t.c.res_pk, other.c.hash_identity == spec.identity)
            .scalar_subquery()
        )
        stmt = sa.select(rows_t.c.res_pk, rows_t.c.v).where(rows_t.c.v == best).distinct()
        if compiled.criteria:
            stmt = stmt.where(rows_t.c.res_pk.in_(compiled.select))
        order = rows_t.c.v.desc() if desc else rows_t.c.v.asc()
        rows = conn.execute(stmt.order_by(order, rows_t.c.res_pk.asc()).limit(count + 1)).all()
        if len(rows) > count:
            return rows
        walked = conn.execute(sa.select(sa.func.count()).select_from(rows_t)).scalar_one()
        if walked < n:
            return None  # the end of the values: the general query does this last page
        n *= 4
    return None


def _plain_page(
    unit: Unit, req: SearchRequest, compiled: CompiledSearch, cursor: str | None, count: int
) -> Sequence[sa.Row] | None:
    """An unsorted page when the join to ``resource`` would filter nothing (a search of one
    type, no compartment, the type visible as such): the matches' own ``SELECT`` ordered by
    primary key, from the cursor, with the LIMIT inside it -- so PostgreSQL plans it for the
    first ``count + 1`` rows (index order and early stop) rather than for all matches, as it
    does a DISTINCT subquery under the join. Rows ``(pk,)`` as the general query returns them."""
    if req.res_type is None:
        return None
    col = compiled.select.selected_columns[0]
    col = col.element if isinstance(col, sa.Label) else col
    stmt = compiled.select
    if cursor:
        stmt = stmt.where(col > _decode(cursor, 0)[1])
    return unit.conn.execute(stmt.order_by(col).limit(count + 1)).all()


def _pk_page(
    unit: Unit, req: SearchRequest, compiled: CompiledSearch, cursor: str | None, count: int
) -> Sequence[sa.Row] | None:
    """A page of an unsorted search with a ``_has`` criterion whose referring resources are not
    few (``Patient?_has:Observation:subject:code=`` a common code), read by walking the
    searched type's live rows in primary-key order from the cursor: the next ``n`` rows (a range
    of ``resource (res_type, pk)`` that stops after ``n``), of which those among the matches are
    kept; if fewer than ``count + 1`` are found, the walk goes on after the last row read, the
    next ``n`` sized by the share of matches so far. Rows ``(pk,)`` as the general query returns them: ``count + 1`` of them, or fewer
    at the end of the type's rows.

    How a walked row is tested depends on how many referring resources there are (a bounded
    count): from ``HAS_WALK_MIN`` on, ``pk IN (<the matches>)``, which PostgreSQL answers per row
    by index probes (its reference rows, then their sources' criteria) and stops at a page;
    from ``HAS_JOIN_MIN`` on, the walked rows' reference rows joined to the sources as a hashed
    set (index-only reads of the reference rows, no probe per reference). Fewer than
    ``HAS_JOIN_MIN`` are followed from their side by the general query (None), as are
    compartment searches and security filters that depend on the row, and a walk that has read
    ``PK_WALK_MAX`` rows without filling the page (other criteria that select few)."""
    walk = compiled.has_walk
    if (
        walk is None
        or req.res_type is None
        or req.compartment is not None
        or not _type_visible(req)
    ):
        return None
    conn = unit.conn
    probe = walk.has.sources.limit(HAS_WALK_MIN).subquery()
    sources = conn.execute(sa.select(sa.func.count()).select_from(probe)).scalar_one()
    if sources < HAS_JOIN_MIN:
        return None
    after = _decode(cursor, 0)[1] if cursor else 0
    c, ref = resource.c, idx_reference.c
    found: list = []
    n, walked = (count + 1) * 4, 0
    while walked < PK_WALK_MAX:
        chunk = (
            sa.select(c.pk, c.res_id)
            .where(c.res_type == req.res_type, c.deleted.is_(False), c.pk > after)
            .order_by(c.pk)
            .limit(n)
            .subquery("chunk")
        )
        if sources >= HAS_WALK_MIN:
            hits = sa.select(chunk.c.pk).where(chunk.c.pk.in_(walk.members))
        else:
            hits = (
                sa.select(chunk.c.pk)
                .join_from(
                    chunk,
                    idx_reference,
                    sa.and_(
                        ref.target_id == chunk.c.res_id,
                        ref.hash_identity == walk.has.identity,
                        ref.target_type == req.res_type,
                    ),
                )
                .where(ref.res_pk.in_(walk.has.sources))
                .distinct()
            )
            if walk.others is not None:
                hits = hits.where(chunk.c.pk.in_(walk.others))
        hits = hits.order_by(chunk.c.pk).limit(count + 1 - len(found))
        found += conn.execute(hits).all()
        if len(found) > count:
            return found
        last, read = conn.execute(
            sa.select(sa.func.max(chunk.c.pk), sa.func.count()).select_from(chunk)
        ).one()
        if read < n:
            return found  # every row of the type after the cursor was read
        after, walked = last, walked + read
        # The next chunk: what the matches so far say is enough for the rest of the page, with
        # a margin (at most four times this one; four times it when nothing matched yet).
        need = count + 1 - len(found)
        n = min(n * 4, max(need, 3 * need * walked // (2 * len(found)))) if found else n * 4
    return None


def _type_visible(req: SearchRequest) -> bool:
    """Whether the caller's security filter admits every row of ``req.res_type`` as such (so a
    page need not look at the rows): the type is readable and, for a patient-context caller,
    free of the compartment condition."""
    sec = req.security
    if sec is None:
        return True
    if sec.types is not None and req.res_type not in sec.types:
        return False
    if sec.released_only and (req.res_type is None or req.res_type in HIDDEN_TYPES):
        return False
    return sec.compartment is None or sec.free_types is None or req.res_type in sec.free_types


def _with(stored: StoredJSON, content: dict) -> StoredJSON:
    """A page's resource with ``content`` shaped by ``_summary`` / ``_elements`` (as JSON text,
    which the Bundle carries as it does the others)."""
    return StoredJSON(stored.res_type, stored.res_id, orjson.dumps(content).decode())


def _count(unit: Unit, select: sa.Select, *, estimate: bool) -> int:
    sub = select.subquery()
    if estimate and unit.conn.dialect.name == "postgresql":
        sql = sa.select(sa.func.count()).select_from(sub)
        compiled = sql.compile(unit.conn, compile_kwargs={"literal_binds": True})
        plan = unit.conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}").scalar_one()
        plan = plan if isinstance(plan, list) else orjson.loads(plan)
        node = plan[0]["Plan"]
        while node.get("Plans") and node.get("Node Type") in (
            "Aggregate",
            "Gather",
            "Finalize Aggregate",
            "Partial Aggregate",
        ):
            node = node["Plans"][0]
        return int(node.get("Plan Rows", 0))
    return unit.conn.execute(sa.select(sa.func.count()).select_from(sub)).scalar_one()


def _explain(unit: Unit, select: sa.Select, base: str) -> dict:
    """``_explain=true``: the SQL and, on PostgreSQL, its plan, for operators."""
    sql = str(select.compile(unit.conn, compile_kwargs={"literal_binds": True}))
    lines = [sql]
    if unit.conn.dialect.name == "postgresql":
        lines += [r[0] for r in unit.conn.exec_driver_sql(f"EXPLAIN ANALYZE {sql}")]
    else:
        lines += [
            " | ".join(map(str, r)) for r in unit.conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        ]
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "information", "code": "informational", "diagnostics": "\n".join(lines)}
        ],
    }


def _in_compartment(
    unit: Unit, res_type: str | None, comp_type: str, comp_id: str
) -> sa.ColumnElement:
    """Members of compartment ``comp_type/comp_id`` (R4 compartmentdefinition-patient)."""
    from resources.search.compartments import compartment_params

    if res_type is None:
        raise Invalid("a compartment search needs a resource type")
    if res_type == comp_type:
        return resource.c.res_id == comp_id
    params = compartment_params(comp_type, res_type)
    if not params:
        return sa.false()
    idents = [keys.identity(res_type, p) for p in params]
    members = sa.select(idx_reference.c.res_pk).where(
        idx_reference.c.hash_identity.in_(idents),
        idx_reference.c.target_type == comp_type,
        idx_reference.c.target_id == comp_id,
    )
    return resource.c.pk.in_(members)


def _secured(security: Security, res_type: str | None = None) -> list[sa.ColumnElement]:
    """The security filter on ``resource`` rows (``resources.search.visibility.secured``)."""
    return secured(security, res_type)


def is_member(unit: Unit, pk: int, comp_type: str, comp_id: str) -> bool:
    """Whether resource row ``pk`` belongs to compartment ``comp_type/comp_id``."""
    stmt = sa.select(resource.c.pk).where(
        resource.c.pk == pk, compartment_members(comp_type, comp_id)
    )
    return unit.conn.execute(stmt).first() is not None


def is_unreleased(unit: Unit, res_type: str, pk: int) -> bool:
    """Whether resource row ``pk`` is a result not yet verified by a clinician
    (``resources.search.visibility.unreleased``)."""
    if res_type not in HIDDEN_TYPES:
        return False
    stmt = sa.select(resource.c.pk).where(resource.c.pk == pk, unreleased(resource, res_type))
    return unit.conn.execute(stmt).first() is not None


def _applied(query: Sequence[tuple[str, str]], unsupported: Sequence) -> list[tuple[str, str]]:
    """The query without what was not applied, for the links: an ``_include`` by its value
    (the others of its name were applied), any other parameter by its name."""
    pairs = {(u.name, u.value) for u in unsupported}
    names = {u.name for u in unsupported if not u.name.startswith(("_include", "_revinclude"))}
    return [(k, v) for k, v in query if k not in names and (k, v) not in pairs]


def _includes(
    unit: Unit,
    page: list[StoredJSON],
    includes: list,
    revincludes: list,
    security: Security | None = None,
) -> tuple[list[StoredJSON], list[Issue]]:
    """Resources named by ``_include`` (forward, with ``:iterate``) and ``_revinclude``."""
    if not page or (not includes and not revincludes):
        return [], []
    registry = unit.repo.search.registry

    def secured(res_type: str | None) -> list[sa.ColumnElement]:
        return _secured(security, res_type) if security is not None else []

    seen = {(s.res_type, s.res_id) for s in page}
    found: list[StoredJSON] = []
    issues: list[Issue] = []
    frontier = list(page)
    for depth in range(ITERATE_DEPTH):
        step = [i for i in includes if depth == 0 or i.iterate]
        if not step or not frontier:
            break
        new: list[StoredJSON] = []
        for inc in step:
            sources = [s for s in frontier if inc.source in ("*", s.res_type)]
            if not sources:
                continue
            idents = _reference_idents(
                registry, {s.res_type for s in sources}, inc.param, inc.source
            )
            if not idents:
                continue
            src_pks = _pks_of(unit, sources)
            cond = [idx_reference.c.res_pk.in_(src_pks), idx_reference.c.hash_identity.in_(idents)]
            if inc.target:
                cond.append(idx_reference.c.target_type == inc.target)
            targets = (
                sa.select(idx_reference.c.target_type, idx_reference.c.target_id)
                .where(*cond)
                .distinct()
            )
            included = unit.read_json(
                sa.tuple_(resource.c.res_type, resource.c.res_id).in_(targets),
                *secured(inc.target or None),  # the targets' type when the include names it
                limit=INCLUDE_LIMIT + 1,
            )
            for s in included:
                if (s.res_type, s.res_id) not in seen:
                    seen.add((s.res_type, s.res_id))
                    new.append(s)
        found += new
        frontier = new
    for inc in revincludes:
        rev_idents = (
            _reference_idents(registry, {inc.source}, inc.param, inc.source)
            if inc.source != "*"
            else None
        )
        cond = [
            sa.tuple_(idx_reference.c.target_type, idx_reference.c.target_id).in_(
                [(s.res_type, s.res_id) for s in page]
            )
        ]
        if rev_idents is not None:
            if not rev_idents:
                continue
            cond.append(idx_reference.c.hash_identity.in_(rev_idents))
        referrers = sa.select(idx_reference.c.res_pk).where(*cond)
        where = [resource.c.pk.in_(referrers), *secured(None if inc.source == "*" else inc.source)]
        if inc.source != "*":
            where.append(resource.c.res_type == inc.source)
        for s in unit.read_json(*where, limit=INCLUDE_LIMIT + 1):
            if (s.res_type, s.res_id) not in seen:
                seen.add((s.res_type, s.res_id))
                found.append(s)
    if len(found) > INCLUDE_LIMIT:
        found = found[:INCLUDE_LIMIT]
        issues.append(
            Issue(
                "too-costly", f"included resources were cut at {INCLUDE_LIMIT}", severity="warning"
            )
        )
    return found, issues


def _pks_of(unit: Unit, stored: list[StoredJSON]) -> sa.Select:
    pairs = [(s.res_type, s.res_id) for s in stored]
    return sa.select(resource.c.pk).where(
        sa.tuple_(resource.c.res_type, resource.c.res_id).in_(pairs)
    )


def _reference_idents(registry, types: set[str], param: str, source: str) -> list[int]:  # type: ignore[no-untyped-def]
    idents = []
    for t in types:
        params = registry.for_type(t)
        if param == "*":
            idents += [keys.identity(t, p.code) for p in params.values() if p.type == "reference"]
        elif param in params and params[param].type == "reference":
            idents.append(keys.identity(t, param))
    return idents
