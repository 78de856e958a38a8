"""AuditEvent search over the audit log (FHIR R4 auditevent.html#search, search.html): the query
is compiled to one SELECT on ``audit_event`` (``date`` on the recorded time) and its search index
``audit_index`` (every other parameter), sorted by date and paged by keyset.

Parameters: ``date`` (prefixes eq/ne/gt/lt/ge/le/sa/eb/ap), tokens ``type``, ``subtype``,
``action``, ``outcome``, ``altid``, ``agent-role``, ``entity-type``, ``entity-role``, ``site``;
references ``agent`` (also ``agent:identifier=system|value``), ``patient``, ``entity``,
``source`` (the observer's reference, else its display); strings ``agent-name``, ``address``,
``entity-name`` (``:exact``, ``:contains``); ``:missing=true|false`` on each of them; ``_id``,
``_count``, ``_sort=date|-date``, ``_total``, ``_summary=count``; ``_include=AuditEvent:agent``,
``:entity``, ``:patient`` or ``:source`` (optionally ``:TargetType``), the page's referenced
resources that exist (deleted or unknown ones are left out), at most ``INCLUDE_LIMIT`` per page.
Comma-separated values are OR, repeated parameters AND.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from resources.audit import audit_event, audit_index
from resources.audit.terms import local_ref
from resources.errors import Invalid, Issue
from resources.search.date import approx, compare, search_range, to_datetime
from resources.search.parse import split_escaped, split_prefix, unescape
from resources.storage.bounds import INT8_MAX, whole
from resources.storage.schema import resource
from resources.storage.store import Stored

TOKENS = frozenset(
    {"type", "subtype", "action", "outcome", "altid", "agent-role", "entity-type", "entity-role"}
)
REFERENCES = frozenset({"agent", "patient", "entity", "source"})
STRINGS = frozenset({"agent-name", "address", "entity-name"})
SEARCHABLE = TOKENS | REFERENCES | STRINGS | {"site", "date"}
# Result parameters: handled here or harmless to the query.
RESULT = frozenset(
    {"_count", "_sort", "_page", "_total", "_summary", "_format", "_pretty", "_include"}
)
INCLUDABLE = ("agent", "entity", "patient", "source")
INCLUDE_LIMIT = 1000  # included resources per page, beyond which an outcome says so
ID_PREFIX = "audit-"


@dataclass
class AuditQuery:
    query: list[tuple[str, str]]
    default_count: int = 20
    max_count: int = 1000
    strict: bool = False


@dataclass
class AuditPage:
    rows: list[tuple[int, datetime, dict]]
    applied: list[tuple[str, str]]  # the criteria used (for the self and next links)
    next_page: str | None = None
    total: int | None = None
    issues: list[Issue] = field(default_factory=list)
    summary_count: bool = False
    included: list[Stored] = field(default_factory=list)


def seq_of(res_id: str) -> int | None:
    """``audit-12`` → 12 (the id under which the log shows its row 12)."""
    if res_id.startswith(ID_PREFIX):
        return whole(res_id[len(ID_PREFIX) :])  # None past the bigint column's range
    return None


def read(conn: sa.Connection, seq: int) -> tuple[int, datetime, dict] | None:
    row = conn.execute(
        sa.select(audit_event.c.seq, audit_event.c.recorded, audit_event.c.event).where(
            audit_event.c.seq == seq
        )
    ).first()
    return (row[0], row[1], row[2]) if row else None


def search(conn: sa.Connection, q: AuditQuery) -> AuditPage:
    conds: list[sa.ColumnElement[bool]] = []
    applied: list[tuple[str, str]] = []
    issues: list[Issue] = []
    count = q.default_count
    descending = False
    page_after: int | None = None
    total_mode: str | None = None
    summary_count = False
    includes: list[tuple[str, str | None]] = []
    for key, raw in q.query:
        name, _, modifier = key.partition(":")
        if name in RESULT:
            if name == "_include":
                if modifier:  # :iterate — the included resources name no AuditEvents
                    issues.append(
                        Issue("not-supported", f"{key} ignored: use _include", severity="warning")
                    )
                    continue
                includes.append(_include_of(raw))
                applied.append((key, raw))
            elif name == "_count":
                count = _whole(key, raw)
                applied.append((key, raw))
            elif name == "_sort":
                if raw not in ("date", "-date"):
                    raise Invalid(f"AuditEvent searches sort by date or -date, not {raw!r}")
                descending = raw == "-date"
                applied.append((key, raw))
            elif name == "_page":
                page_after = _whole(key, raw)
            elif name == "_total":
                if raw not in ("none", "estimate", "accurate"):
                    raise Invalid(f"_total is none, estimate or accurate, not {raw!r}")
                total_mode = raw
                applied.append((key, raw))
            elif name == "_summary":
                if raw != "count":
                    issues.append(
                        Issue("not-supported", f"_summary={raw} ignored", severity="warning")
                    )
                else:
                    summary_count = True
                    applied.append((key, raw))
            continue
        values = [unescape(v) for v in split_escaped(raw, ",") if v != ""]
        if not values:
            raise Invalid(f"parameter {key!r} has no value")
        cond = _criterion(name, modifier or None, values)
        if cond is None:
            issues.append(
                Issue(
                    "not-supported",
                    f"parameter {key!r} ignored: not an AuditEvent search parameter here",
                    severity="warning",
                )
            )
            continue
        conds.append(cond)
        applied.append((key, raw))
    if issues and q.strict:
        raise Invalid("unknown or unsupported search parameters (Prefer: handling=strict)", issues)
    count = min(count, q.max_count)
    total = None
    if summary_count or total_mode in ("accurate", "estimate"):
        total = conn.execute(
            sa.select(sa.func.count()).select_from(audit_event).where(*conds)
        ).scalar_one()
    rows: list[tuple[int, datetime, dict]] = []
    next_page = None
    if not summary_count and count > 0:
        where = list(conds)
        if page_after is not None:
            where.append(_after(conn, page_after, descending))
        order = (
            [audit_event.c.recorded.desc(), audit_event.c.seq.desc()]
            if descending
            else [audit_event.c.recorded.asc(), audit_event.c.seq.asc()]
        )
        found = conn.execute(
            sa.select(audit_event.c.seq, audit_event.c.recorded, audit_event.c.event)
            .where(*where)
            .order_by(*order)
            .limit(count + 1)
        ).all()
        rows = [(r[0], r[1], r[2]) for r in found[:count]]
        if len(found) > count:
            next_page = str(rows[-1][0])
    included: list[Stored] = []
    if includes and rows:
        included = _included(conn, [row[0] for row in rows], includes)
        if len(included) > INCLUDE_LIMIT:
            included = included[:INCLUDE_LIMIT]
            issues.append(
                Issue(
                    "too-costly",
                    f"only the first {INCLUDE_LIMIT} included resources of this page are returned",
                    severity="warning",
                )
            )
    return AuditPage(rows, applied, next_page, total, issues, summary_count, included)


def _include_of(raw: str) -> tuple[str, str | None]:
    """``AuditEvent:entity`` → ("entity", None); ``AuditEvent:entity:Patient`` → (…, "Patient")."""
    parts = raw.split(":")
    target = parts[2] if len(parts) == 3 else None
    if (
        len(parts) not in (2, 3)
        or parts[0] != "AuditEvent"
        or parts[1] not in INCLUDABLE
        or (target is not None and not (target[:1].isupper() and target.isalpha()))
    ):
        raise Invalid(
            f"_include={raw!r}: AuditEvent searches include "
            + ", ".join(f"AuditEvent:{name}" for name in INCLUDABLE)
            + " (optionally :TargetType)"
        )
    return parts[1], target


def _included(
    conn: sa.Connection, seqs: list[int], includes: list[tuple[str, str | None]]
) -> list[Stored]:
    """The current, not deleted resources that the events ``seqs`` reference through the
    ``includes`` parameters (their index holds local ``Type/id`` references), in reference order;
    one more than ``INCLUDE_LIMIT`` at most."""
    wanted = sa.or_(
        *(
            sa.and_(
                audit_index.c.name == name,
                audit_index.c.value.like(f"{target}/%" if target else "%/%"),
            )
            for name, target in includes
        )
    )
    refs = sorted(
        conn.execute(
            sa.select(audit_index.c.value)
            .distinct()
            .where(audit_index.c.seq.in_(seqs), wanted)
            .limit(INCLUDE_LIMIT + 1)
        ).scalars()
    )
    by_type: dict[str, list[str]] = {}
    for ref in refs:
        res_type, _, res_id = ref.partition("/")
        by_type.setdefault(res_type, []).append(res_id)
    found: dict[str, Stored] = {}
    for res_type, ids in by_type.items():
        for row in conn.execute(
            sa.select(resource).where(
                resource.c.res_type == res_type,
                resource.c.res_id.in_(ids),
                resource.c.deleted.is_(False),
            )
        ):
            found[f"{row.res_type}/{row.res_id}"] = Stored(
                row.res_type, row.res_id, row.version, row.last_updated, False, row.content
            )
    return [found[ref] for ref in refs if ref in found]


def _whole(key: str, raw: str) -> int:
    value = whole(raw)
    if value is None:
        raise Invalid(f"{key} must be a whole number up to {INT8_MAX}, not {raw!r}")
    return value


def _after(conn: sa.Connection, seq: int, descending: bool) -> sa.ColumnElement[bool]:
    """Rows strictly after row ``seq`` in (recorded, seq) order: keyset paging, so events
    appended while an admin pages never shift a page."""
    recorded = conn.execute(
        sa.select(audit_event.c.recorded).where(audit_event.c.seq == seq)
    ).scalar()
    if recorded is None:
        raise Invalid(f"the paging cursor {seq!r} is not one this server issued")
    r, s = audit_event.c.recorded, audit_event.c.seq
    if descending:
        return sa.or_(r < recorded, sa.and_(r == recorded, s < seq))
    return sa.or_(r > recorded, sa.and_(r == recorded, s > seq))


def _criterion(name: str, modifier: str | None, values: list[str]) -> sa.ColumnElement[bool] | None:
    if modifier == "missing" and (name in SEARCHABLE):
        if values not in (["true"], ["false"]):
            raise Invalid(f"{name}:missing takes true or false, not {','.join(values)!r}")
        missing = values == ["true"]
        if name == "date":  # every event has its recorded time
            return sa.false() if missing else sa.true()
        present = audit_event.c.seq.in_(
            sa.select(audit_index.c.seq).where(audit_index.c.name == name)
        )
        return ~present if missing else present
    if name == "date":
        if modifier:
            raise Invalid(f"date does not take the modifier :{modifier}")
        return sa.or_(*(_date(v) for v in values))
    if name == "_id":
        seqs = [seq_of(v) for v in values]
        return audit_event.c.seq.in_([s for s in seqs if s is not None])
    if name in TOKENS or name == "site":
        if modifier:
            raise Invalid(f"{name} does not take the modifier :{modifier} here")
        return _indexed(name, sa.or_(*(_token(v) for v in values)))
    if name in REFERENCES:
        if modifier == "identifier":
            if name != "agent":
                raise Invalid(f"{name}:identifier is not supported (agent:identifier is)")
            return _indexed("agent-identifier", sa.or_(*(_token(v) for v in values)))
        return _indexed(name, sa.or_(*(_reference(name, modifier, v) for v in values)))
    if name in STRINGS:
        if modifier not in (None, "exact", "contains"):
            raise Invalid(f"{name} does not take the modifier :{modifier}")
        return _indexed(name, sa.or_(*(_string(modifier, v) for v in values)))
    return None


def _indexed(name: str, match: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return audit_event.c.seq.in_(
        sa.select(audit_index.c.seq).where(audit_index.c.name == name, match)
    )


def _date(value: str) -> sa.ColumnElement[bool]:
    prefix, text = split_prefix(value)
    sl, sh = search_range(text)
    if prefix == "ap":
        sl, sh = approx(sl, sh)
    col = audit_event.c.recorded
    return compare(prefix, to_datetime(sl), to_datetime(sh), col, col)


def _token(value: str) -> sa.ColumnElement[bool]:
    """``code``, ``system|code``, ``|code`` (no system), ``system|`` (any code)."""
    parts = split_escaped(value, "|")
    if len(parts) == 1:
        return audit_index.c.value == unescape(parts[0])
    if len(parts) != 2:
        raise Invalid(f"{value!r} is not a token (code or system|code)")
    system, code = unescape(parts[0]), unescape(parts[1])
    conds = [audit_index.c.system.is_(None) if system == "" else audit_index.c.system == system]
    if code:
        conds.append(audit_index.c.value == code)
    return sa.and_(*conds)


def _reference(name: str, modifier: str | None, value: str) -> sa.ColumnElement[bool]:
    if modifier is not None:
        if not modifier[:1].isupper() or not modifier.isalpha():
            raise Invalid(f"{name} does not take the modifier :{modifier}")
        value = f"{modifier}/{value}"
    if name == "source" and "/" not in value:
        return audit_index.c.value == value  # the observer's display
    if "/" in value:
        local = local_ref(value)
        if local is None:
            raise Invalid(f"{value!r} is not a reference (Type/id or an absolute URL)")
        return audit_index.c.value == local
    if name == "patient":
        return audit_index.c.value == f"Patient/{value}"
    return audit_index.c.value.like("%/" + _like_escape(value), escape="\\")


def _string(modifier: str | None, value: str) -> sa.ColumnElement[bool]:
    if modifier == "exact":
        return audit_index.c.value == value
    pattern = _like_escape(value.lower())
    pattern = f"%{pattern}%" if modifier == "contains" else f"{pattern}%"
    return sa.func.lower(audit_index.c.value).like(pattern, escape="\\")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
