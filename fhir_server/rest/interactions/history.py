"""history — FHIR R4 http.html#history: instance, type and system level, newest first, with
``_since``, ``_at`` (the versions current at some time in that date(Time)'s period, or with a
prefix ``ge``/``gt``/``le``/``lt`` after or before it, as a date search reads it; repeatable),
``_count`` and paging links (keyset cursors in ``_page``). Other parameters are ignored, or
refused (400, severity ``error``) under ``Prefer: handling=strict``."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.interactions.common import refuse_unknown
from resources.errors import Invalid
from resources.search.date import date_range, to_datetime
from resources.storage.bounds import clamp_whole, is_whole
from resources.storage.bundles import history_bundle
from resources.storage.history import history as query_history

KNOWN = frozenset({"_count", "_since", "_at", "_page", "_format", "_pretty"})


def page_size(ctx: Context, req: FhirRequest) -> int:
    raw = req.param("_count")
    if raw is None:
        return ctx.settings.default_page_size
    if not is_whole(raw):
        raise Invalid(f"_count must be a non-negative integer, not {raw!r}")
    return clamp_whole(raw, ctx.settings.max_page_size)


def _since(req: FhirRequest) -> datetime | None:
    raw = req.param("_since")
    if raw is None:
        return None
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(f"_since must be a FHIR instant, not {raw!r}") from exc
    if ts.tzinfo is None:
        raise Invalid(f"_since must carry a time zone: {raw!r}")
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        # A valid instant whose UTC time falls outside years 1-9999 (9999-12-31T23:59:59-14:00):
        # nothing is later than the calendar's end, everything is later than its start.
        edge = datetime.max if ts.year == 9999 else datetime.min
        return edge.replace(tzinfo=UTC)


# ``_at`` takes a date(Time) as a date search does (http.html#history points to search.html's
# dates): the prefixes that name a period are read as one; the others are refused.
AT_PREFIXES = ("eq", "ge", "gt", "le", "lt")
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
ONE = 1  # microseconds: the period of ``gt``/``lt`` starts/ends just beyond the value's


def _at(req: FhirRequest) -> list[tuple[datetime, datetime]]:
    periods = []
    for k, raw in req.query:
        if k != "_at":
            continue
        prefix, text = (raw[:2], raw[2:]) if raw[:2].isalpha() else ("eq", raw)
        if prefix not in AT_PREFIXES:
            raise Invalid(
                f"_at takes a date(Time) with no prefix or one of {', '.join(AT_PREFIXES)}, "
                f"not {raw!r}"
            )
        try:
            low, high = date_range(text)
            if prefix == "eq":
                period = (to_datetime(low), to_datetime(high))
            elif prefix in ("ge", "gt"):
                period = (to_datetime(low if prefix == "ge" else high + ONE), LATEST)
            else:
                period = (EARLIEST, to_datetime(high if prefix == "le" else low - ONE))
        except (ValueError, OverflowError) as exc:
            raise Invalid(f"_at must be a FHIR date, dateTime or instant, not {raw!r}") from exc
        periods.append(period)
    return periods


def history(ctx: Context, req: FhirRequest) -> Reply:
    refuse_unknown(req, KNOWN, "history")
    count = page_size(ctx, req)
    since = _since(req)
    at = _at(req)
    cursor = req.param("_page")

    def run(u):  # type: ignore[no-untyped-def]
        if req.res_id is not None:
            u.require_known(req.res_type, req.res_id)  # 404 for ids never seen
        return query_history(
            u.conn,
            res_type=req.res_type,
            res_id=req.res_id,
            since=since,
            count=count,
            cursor=cursor,
            at=at,
        )

    page = ctx.repo.read(run)
    base_path = f"{ctx.base}/{req.path}"
    keep = [(k, v) for k, v in req.query if k not in ("_page",)]
    self_url = base_path + (f"?{urlencode(req.query)}" if req.query else "")
    next_url = None
    if page.next_cursor:
        next_url = f"{base_path}?{urlencode([*keep, ('_page', page.next_cursor)])}"
    body = history_bundle(
        ctx.base, page.entries, self_url=self_url, next_url=next_url, total=page.total
    )
    return Reply(200, body)
