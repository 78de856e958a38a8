"""Live views: the websocket Subscriptions the web apps follow instead of polling
(``Subscription/$watch``, docs/subscriptions.md "Live views").

An app asks for criteria (``Task?owner=Practitioner/7``); the Subscription that answers is owned
by the caller's security filter, exactly as one the caller wrote itself, so it matches only what
the caller may read (a patient's only their own compartment). They do not accumulate:

- **Reuse.** A live Subscription is shared by every caller with the same criteria and the same
  owner filter (``subscription_reg.owner_hash``): two sessions of one doctor, or two doctors with
  the same grants following the same search, bind the same one. A patient's owner filter names
  their compartment, so no two patients ever share one.
- **End.** Each carries ``end`` = now + ``TTL`` and the tag ``LIVE_TAG``; reusing it moves
  ``end`` forward once less than ``RENEW_BEFORE`` is left (a new version at most every quarter
  of an hour, not one per page view). ``sweep`` deletes tagged Subscriptions whose ``end`` has
  passed, with their registration and outbox rows.
- **A cap.** One owner filter has at most ``MAX_PER_OWNER`` live Subscriptions that have not
  ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from resources.errors import FhirError, Invalid, NotFound, Unprocessable
from resources.storage.repository import Repository, Unit
from resources.subscriptions.outbox import (
    OFF,
    owner_hash,
    owner_json,
    parse_subscription,
    server_write,
)
from resources.subscriptions.tables import subscription_reg

LIVE_SYSTEM = "http://hearth.local/fhir/CodeSystem/subscription-use"
LIVE_TAG = {"system": LIVE_SYSTEM, "code": "live-view", "display": "Live view of a Hearth app"}
TTL = timedelta(hours=1)
RENEW_BEFORE = timedelta(minutes=45)
MAX_PER_OWNER = 20
MAX_CRITERIA = 5  # criteria one $watch call may name


def is_live(content: dict | None) -> bool:
    tags = ((content or {}).get("meta") or {}).get("tag") or []
    return any(t.get("system") == LIVE_SYSTEM and t.get("code") == "live-view" for t in tags)


def _instant(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _end_of(content: dict) -> datetime | None:
    end = content.get("end")
    if not isinstance(end, str):
        return None
    try:
        return datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None


def watch(repo: Repository, criteria: Sequence[str], now: datetime) -> list[str]:
    """The ids of live Subscriptions for ``criteria`` (one each, in order), owned by
    ``repo.security``: reused when one exists, created otherwise. ``repo`` must carry the
    caller's security filter and no write guard (the caller's scopes are checked by the edge)."""
    if not criteria:
        raise Invalid("name at least one criteria", expression=["criteria"])
    if len(criteria) > MAX_CRITERIA:
        raise Invalid(f"at most {MAX_CRITERIA} criteria at once", expression=["criteria"])
    wanted = []
    for text in criteria:
        reg = parse_subscription({"criteria": text, "channel": {"type": "websocket"}})
        if reg.topic is not None:
            raise Invalid(
                "live views follow a search (Type?params), not a topic", expression=["criteria"]
            )
        wanted.append((text.strip(), reg.res_type, reg.query))
    key = owner_hash(owner_json(repo.security))

    def run(u: Unit) -> list[str]:
        out = []
        for text, res_type, query in wanted:
            found = _reuse(u, key, res_type, query, now)
            out.append(found if found is not None else _create(u, key, text, now))
        return out

    return repo.run(run)


def _candidates(u: Unit, key: str, *conds: sa.ColumnElement) -> list[str]:
    c = subscription_reg.c
    stmt = (
        sa.select(c.id)
        .where(c.channel == "websocket", c.topic.is_(None), c.owner_hash == key, c.status != OFF)
        .where(*conds)
        .order_by(c.created, c.id)
    )
    return list(u.conn.execute(stmt).scalars())


def _live_content(u: Unit, sub_id: str) -> dict | None:
    try:
        content = u.read("Subscription", sub_id).content
    except FhirError:
        return None
    return content if is_live(content) else None


def _running(content: dict | None, now: datetime) -> bool:
    """A live Subscription's content whose ``end`` has not passed."""
    if content is None:
        return False
    end = _end_of(content)
    return end is None or end > now


def _reuse(u: Unit, key: str, res_type: str, query: str, now: datetime) -> str | None:
    c = subscription_reg.c
    for sub_id in _candidates(u, key, c.res_type == res_type, c.query == query):
        content = _live_content(u, sub_id)
        if content is None:
            continue
        end = _end_of(content)
        if end is not None and end <= now:
            continue  # expired: the sweep deletes it
        if end is None or end - now < RENEW_BEFORE:
            with server_write():  # the registration (owner, numbering) stays as it is
                u.update("Subscription", sub_id, {**content, "end": _instant(now + TTL)})
        return sub_id
    return None


def _create(u: Unit, key: str, criteria: str, now: datetime) -> str:
    live = [s for s in _candidates(u, key) if _running(_live_content(u, s), now)]
    if len(live) >= MAX_PER_OWNER:
        raise Unprocessable(
            f"this account already follows {len(live)} live views, the most allowed; "
            "they end within the hour",
            expression=["criteria"],
        )
    made = u.create(
        {
            "resourceType": "Subscription",
            "meta": {"tag": [LIVE_TAG]},
            "status": "requested",
            "reason": "Live view of a Hearth app (Subscription/$watch)",
            "criteria": criteria,
            "end": _instant(now + TTL),
            "channel": {"type": "websocket"},
        }
    )
    return made.stored.res_id


def sweep(repo: Repository, now: datetime, limit: int = 100) -> int:
    """Delete live Subscriptions whose ``end`` has passed (their registration and events go
    with them); the number deleted."""

    def run(u: Unit) -> int:
        c = subscription_reg.c
        ids = list(
            u.conn.execute(
                sa.select(c.id)
                .where(c.channel == "websocket", c.topic.is_(None))
                .order_by(c.updated)
            ).scalars()
        )
        gone = 0
        for sub_id in ids:
            content = _live_content(u, sub_id)
            end = None if content is None else _end_of(content)
            if end is not None and end <= now:
                try:
                    u.delete("Subscription", sub_id)
                except NotFound:
                    continue
                gone += 1
                if gone >= limit:
                    break
        return gone

    return repo.run(run)
