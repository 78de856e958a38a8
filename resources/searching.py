"""Running a search: criteria compiled by ``resources.search``, then paging, totals and the
searchset Bundle (FHIR R4 search.html#return).

Pages are keyset pages: the ``_page`` cursor names the last primary key returned, so rows written
or deleted while a client pages never shift a page. Unknown or unsupported parameters are
reported in an OperationOutcome entry (``search.mode = outcome``), or rejected with 400 under
``Prefer: handling=strict``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa

from resources.bundles import searchset_bundle
from resources.errors import Invalid, Issue
from resources.repository import Unit
from resources.schema import resource

# Parameters that shape the result rather than select resources (search.html#return).
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_page",
        "_total",
        "_summary",
        "_elements",
        "_sort",
        "_include",
        "_revinclude",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
    }
)


@dataclass
class SearchRequest:
    res_type: str
    query: list[tuple[str, str]]
    count: int
    strict: bool = False
    criteria: list[tuple[str, str]] = field(default_factory=list)
    cursor: int | None = None
    total_mode: str = "none"

    @classmethod
    def parse(
        cls,
        res_type: str,
        query: list[tuple[str, str]],
        *,
        default_count: int,
        max_count: int,
        strict: bool,
    ) -> SearchRequest:
        req = cls(res_type, query, default_count, strict)
        for k, v in query:
            if k == "_count":
                if not v.isdigit():
                    raise Invalid(f"_count must be a non-negative integer, not {v!r}")
                req.count = min(int(v), max_count)
            elif k == "_page":
                req.cursor = _decode(v)
            elif k == "_total":
                if v not in ("none", "estimate", "accurate"):
                    raise Invalid(f"_total must be none, estimate or accurate, not {v!r}")
                req.total_mode = v
            elif k not in RESULT_PARAMS:
                req.criteria.append((k, v))
        return req


def _encode(pk: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": pk})).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return int(orjson.loads(raw)["after"])
    except (ValueError, TypeError, KeyError) as exc:
        raise Invalid(f"the paging cursor {cursor!r} is not one this server issued") from exc


def run_search(unit: Unit, req: SearchRequest, *, base: str, path: str) -> dict:
    """Execute ``req`` and return the searchset Bundle."""
    engine = unit.repo.search
    compiled = engine.compile(req.res_type, req.criteria)
    issues = [
        Issue("not-supported", f"parameter {u.name!r} ignored: {u.reason}", severity="warning")
        for u in compiled.unsupported
    ]
    if issues and req.strict:
        raise Invalid("unknown or unsupported search parameters (Prefer: handling=strict)", issues)
    matches = compiled.select.subquery()
    stmt = sa.select(matches.c.pk).order_by(matches.c.pk)
    if req.cursor is not None:
        stmt = stmt.where(matches.c.pk > req.cursor)
    pks = [r[0] for r in unit.conn.execute(stmt.limit(req.count + 1))] if req.count else []
    page = unit.read_many(pks[: req.count])
    total = None
    if req.total_mode in ("accurate", "estimate") or req.count == 0:
        total = unit.conn.execute(sa.select(sa.func.count()).select_from(matches)).scalar_one()
    ignored = {u.name for u in compiled.unsupported}
    applied = [(k, v) for k, v in req.query if k != "_page" and k not in ignored]
    self_url = f"{base}/{path}" + (f"?{urlencode(req.query)}" if req.query else "")
    next_url = None
    if len(pks) > req.count and page:
        last_pk = pks[req.count - 1]
        next_url = f"{base}/{path}?{urlencode([*applied, ('_page', _encode(last_pk))])}"
    outcome = (
        {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}
        if issues
        else None
    )
    return searchset_bundle(
        base, page, self_url=self_url, next_url=next_url, total=total, outcome=outcome
    )


def count_only(unit: Unit, res_type: str) -> int:
    return unit.conn.execute(
        sa.select(sa.func.count())
        .select_from(resource)
        .where(resource.c.res_type == res_type, ~resource.c.deleted)
    ).scalar_one()
