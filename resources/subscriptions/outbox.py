"""Matching on the repository's write path, in the writing transaction.

``Unit`` calls :func:`on_write` after every create or update it stores (single writes,
transactions, ``create_many``: every write path goes through it) and :func:`on_delete` after a
delete. A Subscription write keeps its registration row (``subscription_reg``) in step; any other
write is matched against the registered subscriptions of its type: the topic's change test
(``Trigger.when``) in Python, then every candidate's criteria in one SQL statement, each
restricted to the written row and to what the subscription's owner may read
(``resources.search.visibility``, the one security filter). A write that matches gets one outbox
row (``subscription_write``) naming the subscriptions it matched, in the caller's transaction, so
a rolled-back write is never announced and a committed one always is; the worker spreads it into
numbered per-subscription events (``delivery.spread``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import sqlalchemy as sa

from resources.errors import Invalid, NotSupported
from resources.search.visibility import Security, secured, visible_in
from resources.storage.db import among
from resources.storage.schema import resource
from resources.storage.store import Stored, utcnow
from resources.subscriptions.registry import topics
from resources.subscriptions.tables import (
    subscription_cursor,
    subscription_event,
    subscription_reg,
    subscription_write,
)
from resources.subscriptions.topic import Change, Topic

if TYPE_CHECKING:
    from collections.abc import Iterator

    from resources.search import SearchEngine
    from resources.storage.repository import Unit

JOB_KIND = "subscription"  # the work-queue kind of a subscription's delivery job (key: its id)
ANY = "*"  # subscription_reg.res_type of a topic subscription watching all of its topic's types
HEARTBEAT_URL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period"
)
FILTER_URL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
)
PAYLOAD_CONTENT_URL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)
# Backport IG backport-content-value-set, least content first
CONTENTS = ("empty", "id-only", "full-resource")
# The payloads each channel may carry (R4 subscription.html, Subscription.channel.payload: "The
# mime type 'text/plain' may also be used for Email and SMS subscriptions").
PAYLOADS = {
    "rest-hook": ("", "application/fhir+json", "application/fhir+xml"),
    "websocket": ("", "application/fhir+json", "application/fhir+xml"),
    "email": ("", "text/plain", "application/fhir+json", "application/fhir+xml"),
}
CHANNELS = tuple(PAYLOADS)
REQUESTED, ACTIVE, ERROR, OFF = "requested", "active", "error", "off"

# Set while the server itself writes a Subscription (its status and error, ``delivery.py``): such
# a write keeps the registration as it is (owner, numbering, delivery state).
_server_write: ContextVar[bool] = ContextVar("hearth_subscription_server_write", default=False)


@contextmanager
def server_write() -> Iterator[None]:
    token = _server_write.set(True)
    try:
        yield
    finally:
        _server_write.reset(token)


@dataclass(frozen=True)
class Registration:
    """What a Subscription resource asks for, checked."""

    res_type: str  # or ANY
    query: str
    topic: str | None
    channel: str
    endpoint: str
    payload: str
    headers: list[str]
    heartbeat: int | None = None  # seconds between heartbeats when nothing else is sent
    content: str = "full-resource"  # the payload content asked for (``CONTENTS``)


def parse_subscription(content: dict) -> Registration:
    """``content`` (a Subscription) as a registration; ``Invalid`` / ``NotSupported`` naming the
    element at fault."""
    criteria = content.get("criteria")
    if not isinstance(criteria, str) or not criteria.strip():
        raise Invalid("Subscription.criteria is required", expression=["Subscription.criteria"])
    criteria = criteria.strip()
    channel = content.get("channel") or {}
    ctype = channel.get("type")
    if ctype not in CHANNELS:
        raise NotSupported(
            f"Subscription.channel.type {ctype!r} is not supported "
            f"(supported: {', '.join(CHANNELS)})",
            expression=["Subscription.channel.type"],
        )
    endpoint = channel.get("endpoint")
    if ctype == "websocket":
        endpoint = ""  # the client connects to /websocket and binds (R4 subscription.html)
    elif ctype == "email":
        endpoint = mailto(endpoint)
    elif not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise Invalid(
            "a rest-hook Subscription needs an http(s) channel.endpoint",
            expression=["Subscription.channel.endpoint"],
        )
    payload = str(channel.get("payload") or "").split(";", 1)[0].strip()
    if payload not in PAYLOADS[ctype]:
        raise NotSupported(
            f"Subscription.channel.payload {payload!r} is not supported for {ctype} "
            f"(supported: {', '.join(repr(p) for p in PAYLOADS[ctype])})",
            expression=["Subscription.channel.payload"],
        )
    shows = _content(channel)
    headers = [str(h) for h in channel.get("header") or []]
    for h in headers:
        name, sep, _ = h.partition(":")
        if not sep or not name.strip() or "\n" in h or "\r" in h:
            raise Invalid(
                f"Subscription.channel.header {h!r} is not 'Name: value'",
                expression=["Subscription.channel.header"],
            )
    heartbeat = _heartbeat(channel, ctype)
    topic = topics().get(criteria)
    filters = _filters(content)
    if topic is not None:
        res_type, query = _topic_filter(topic, filters)
    else:
        if filters:
            raise Invalid(
                "filter criteria are for topic subscriptions; put them in criteria",
                expression=["Subscription.criteria"],
            )
        res_type, query = _split(criteria)
    return Registration(
        res_type,
        query,
        None if topic is None else topic.url,
        ctype,
        str(endpoint),
        payload,
        headers,
        heartbeat,
        shows,
    )


def _content(channel: dict) -> str:
    """The Backport IG ``backport-payload-content`` (on ``Subscription.channel.payload``, so in
    ``channel._payload``): how much of the resource a notification carries, ``full-resource``
    when not given. What is sent is never more than the owner may read (``payload_content``)."""
    exts = (channel.get("_payload") or {}).get("extension") or []
    found = [e for e in exts if isinstance(e, dict) and e.get("url") == PAYLOAD_CONTENT_URL]
    if not found:
        return "full-resource"
    value = found[0].get("valueCode")
    if len(found) > 1 or value not in CONTENTS:
        raise Invalid(
            f"payload-content must be one valueCode of {', '.join(CONTENTS)}",
            expression=["Subscription.channel.payload"],
        )
    return str(value)


def _heartbeat(channel: dict, ctype: str) -> int | None:
    """The Backport IG ``backport-heartbeat-period`` (on ``Subscription.channel``): seconds, 1 to
    86400; rest-hook and email (a websocket gets its heartbeat every 30 s regardless)."""
    found = [e for e in channel.get("extension") or [] if e.get("url") == HEARTBEAT_URL]
    if not found:
        return None
    where = ["Subscription.channel.extension"]
    value = found[0].get("valueUnsignedInt")
    if len(found) > 1 or isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("heartbeat-period needs one valueUnsignedInt (seconds)", expression=where)
    if not 1 <= value <= 86400:
        raise Invalid(f"heartbeat-period {value} is not 1 to 86400 seconds", expression=where)
    return None if ctype == "websocket" else value


def mailto(endpoint: object) -> str:
    """An email channel's endpoint, checked: ``mailto:`` and one plain address (R4
    subscription-channel-type ``email``: "the email addressed in the URI (which must be a
    mailto:)"); no second address, query part (``?cc=``, ``?body=``) or display name."""
    from email.utils import parseaddr

    where = ["Subscription.channel.endpoint"]
    if not isinstance(endpoint, str) or not endpoint.lower().startswith("mailto:"):
        raise Invalid("an email Subscription needs a mailto: channel.endpoint", expression=where)
    address = endpoint[len("mailto:") :]
    name, parsed = parseaddr(address)
    local, at, domain = parsed.rpartition("@")
    if (
        name
        or parsed != address
        or not at
        or not local
        or "." not in domain
        or any(c in address for c in ',;?&<>"\\ \t\r\n')
    ):
        raise Invalid(
            f"channel.endpoint {endpoint!r} is not mailto: and one e-mail address", expression=where
        )
    return f"mailto:{address}"


def _filters(content: dict) -> list[str]:
    exts = (content.get("_criteria") or {}).get("extension") or []
    return [str(e.get("valueString")) for e in exts if e.get("url") == FILTER_URL]


def _split(criteria: str) -> tuple[str, str]:
    from resources.validation import is_resource_type

    res_type, _, query = criteria.partition("?")
    if not is_resource_type(res_type):
        raise Invalid(
            f"Subscription.criteria {criteria!r} does not start with an R4 resource type "
            f"(or name a topic: {', '.join(topics())})",
            expression=["Subscription.criteria"],
        )
    return res_type, query


def _topic_filter(topic: Topic, filters: list[str]) -> tuple[str, str]:
    if len(filters) > 1:
        raise NotSupported(
            "one filter criteria per Subscription is supported", expression=["Subscription"]
        )
    if not filters:
        if topic.any_type:
            raise Invalid(
                f"topic {topic.url} needs a filter criteria naming the type ({FILTER_URL})",
                expression=["Subscription.criteria"],
            )
        if len(topic.triggers) == 1:
            return topic.triggers[0].res_type, ""
        return ANY, ""
    res_type, query = _split(filters[0])
    if not topic.any_type and topic.trigger_for(res_type) is None:
        raise Invalid(
            f"topic {topic.url} is about {', '.join(t.res_type for t in topic.triggers)}, "
            f"not {res_type}",
            expression=["Subscription.criteria"],
        )
    return res_type, query


def owner_json(security: Security | None) -> dict | None:
    if security is None:
        return None
    found: dict[str, object] = {
        "types": None if security.types is None else sorted(security.types),
        "compartment": None if security.compartment is None else list(security.compartment),
        "free_types": None if security.free_types is None else sorted(security.free_types),
        "released_only": security.released_only,
    }
    if security.content is not None:  # only then: the owner keys of other filters stay as they were
        found["content"] = owner_json(security.content)
    return found


def owner_security(data: dict | None) -> Security | None:
    if data is None:
        return None
    comp = data.get("compartment")
    return Security(
        types=None if data.get("types") is None else frozenset(data["types"]),
        compartment=None if comp is None else (comp[0], comp[1]),
        free_types=None if data.get("free_types") is None else frozenset(data["free_types"]),
        released_only=bool(data.get("released_only")),
        content=owner_security(data.get("content")),
    )


def content_allowed(owner: dict | None, res_type: str) -> bool:
    """Whether a notification of a write of ``res_type`` that matched a subscription of
    ``owner`` (its stored filter) may carry the resource (``full-resource``), or only its id.

    Matching already applied the owner's filter of what it may find (SMART ``r`` or ``s``:
    readable or searchable types, its patient's compartment). The content needs ``r``
    (``owner["content"]``, stored only where it is narrower): the type must be readable, and a
    read grant limited to the patient's compartment counts only where the match checked that
    same compartment -- otherwise the write is known to be in it only as far as search goes,
    and the notification stays id-only."""
    if owner is None or owner.get("content") is None:
        return True
    content = owner["content"]
    types = content.get("types")
    if types is not None and res_type not in types:
        return False
    return not _in_compartment_only(content, res_type) or _in_compartment_only(owner, res_type)


def payload_content(asked: str, owner: dict | None, res_type: str) -> str:
    """What a notification of a write of ``res_type`` carries: the content the Subscription
    asked for (``CONTENTS``), cut to ``id-only`` where the owner may know of the resource but
    not read it (``content_allowed``)."""
    if asked == "full-resource" and not content_allowed(owner, res_type):
        return "id-only"
    return asked


def _in_compartment_only(data: dict, res_type: str) -> bool:
    """Whether a stored filter lets rows of ``res_type`` through only in its compartment."""
    free = data.get("free_types")
    return data.get("compartment") is not None and free is not None and res_type not in free


# -- the write path ---------------------------------------------------------------------------
def on_write(unit: Unit, pk: int, previous: dict | None, stored: Stored) -> None:
    """After a create or update of row ``pk`` (``previous``: the version it replaced)."""
    if stored.res_type == "Subscription":
        _register(unit, stored)
        return
    content = stored.content
    if content is None:
        return
    c = subscription_reg.c
    live = (c.res_type.in_((stored.res_type, ANY)), c.status != OFF)
    # Registrations with the same criteria and owner filter share one test (apps often follow
    # the same thing): the distinct ones are read, one subquery each, all in one statement.
    kinds = unit.conn.execute(
        sa.select(c.res_type, c.query, c.topic, c.owner_hash, sa.func.min(c.id))
        .where(*live)
        .group_by(c.res_type, c.query, c.topic, c.owner_hash)
    ).all()
    if not kinds:
        return
    search = unit.repo.search
    tests: list[tuple[tuple[str, str, str | None, str], sa.Select]] = []
    for reg_type, reg_query, topic, owner, some_id in kinds:
        query, when = _criteria_of(reg_type, reg_query, topic, stored.res_type)
        if query is None or (when is not None and not when(previous, content)):
            continue
        n = len(tests)
        tests.append(
            (
                (reg_type, reg_query, topic, owner),
                _matcher(unit, search, stored.res_type, query, owner, some_id, n, pk),
            )
        )
    if not tests:
        return
    selects = [select for _, select in tests]
    found = unit.conn.execute(sa.union_all(*selects) if len(selects) > 1 else selects[0])
    hits = [tests[r[0]][0] for r in found]
    if not hits:
        return
    same = [
        sa.and_(
            c.res_type == reg_type,
            c.query == reg_query,
            c.topic.is_(None) if topic is None else c.topic == topic,
            c.owner_hash == owner,
        )
        for reg_type, reg_query, topic, owner in hits
    ]
    matched = sorted(unit.conn.execute(sa.select(c.id).where(*live, sa.or_(*same))).scalars().all())
    if matched:
        record(unit, matched, stored)


def _criteria_of(
    reg_type: str, query: str, topic_url: str | None, res_type: str
) -> tuple[str | None, Change | None]:
    """The query and change test a registration applies to a write of ``res_type`` (query None:
    the registration does not watch that type)."""
    if topic_url is None:
        return query, None
    topic = topics().get(topic_url)
    if topic is None:
        return None, None
    if topic.any_type:
        return query, None
    trigger = topic.trigger_for(res_type)
    if trigger is None:
        return None, None
    return "&".join(q for q in (trigger.query, query) if q), trigger.when


def owner_hash(owner: dict | None) -> str:
    """The key of an owner's filter: registrations with equal keys are matched together."""
    text = json.dumps(owner, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _matcher(
    unit: Unit,
    search: SearchEngine,
    res_type: str,
    query: str,
    owner_key: str,
    sub_id: str,
    n: int,
    pk: int,
) -> sa.Select:
    key = (id(search), res_type, query, owner_key)
    conds = _CONDITIONS.get(key)
    if conds is None:
        owner = unit.conn.execute(
            sa.select(subscription_reg.c.owner).where(subscription_reg.c.id == sub_id)
        ).scalar_one_or_none()
        conds = _conditions(search, res_type, query, owner_security(owner))
        if len(_CONDITIONS) >= 4096:
            _CONDITIONS.clear()
        _CONDITIONS[key] = conds
    return sa.select(sa.literal(n, sa.Integer)).where(resource.c.pk == pk, *conds)


# (search engine, type, criteria, owner key) -> conditions: criteria and owners repeat across
# writes, and compiling them is most of the cost of a match.
_CONDITIONS: dict[tuple[int, str, str, str], tuple[sa.ColumnElement, ...]] = {}


def _conditions(
    search: SearchEngine, res_type: str, query: str, security: Security | None
) -> tuple[sa.ColumnElement, ...]:
    """The conditions on ``resource`` a row of ``res_type`` must meet: the criteria (through the
    search engine, its chains limited to what the owner may read) and the owner's filter."""
    conds: list[sa.ColumnElement] = []
    pairs = parse_qsl(query, keep_blank_values=True)
    if pairs:
        conds.append(resource.c.pk.in_(search.match(res_type, pairs, visible=visible_in(security))))
    if security is not None:
        conds.extend(secured(security, res_type))
    return tuple(conds)


def record(unit: Unit, sub_ids: Sequence[str], stored: Stored) -> None:
    """Store one outbox row for ``stored`` naming every subscription it matched, and wake the
    workers. The per-subscription event numbers are given when the row is spread
    (``delivery.spread``): the write path writes one row whatever the number of subscriptions,
    and locks none of their registrations."""
    unit.conn.execute(
        sa.insert(subscription_write).values(
            res_type=stored.res_type,
            res_id=stored.res_id,
            version=stored.version,
            created=utcnow(),
            subs=list(sub_ids),
        )
    )
    if unit.conn.dialect.name == "postgresql":
        from resources.jobs import queue

        unit.conn.execute(sa.select(sa.func.pg_notify(queue.CHANNEL, JOB_KIND)))


def wake(unit: Unit, sub_ids: Sequence[str]) -> int:
    """Make the delivery jobs of ``sub_ids`` runnable now, unless they run or wait out a
    back-off (a running delivery looks for new events before it finishes: ``delivery.settle``).
    How many it made runnable."""
    from resources.jobs import queue

    at = utcnow()
    q = queue.work_queue.c
    woken = unit.conn.execute(
        sa.update(queue.work_queue)
        .where(
            q.kind == JOB_KIND,
            among(unit.conn, q.key, sub_ids),
            q.state.in_((queue.DONE, queue.FAILED)),
        )
        .values(state=queue.READY, not_before=at, attempts=0, lease_until=None, updated=at)
    )
    if unit.conn.dialect.name == "postgresql":
        unit.conn.execute(sa.select(sa.func.pg_notify(queue.CHANNEL, JOB_KIND)))
    return int(woken.rowcount)


def _register(unit: Unit, stored: Stored) -> None:
    """Keep the registration of a Subscription written by a client (or an operator)."""
    if _server_write.get():
        return
    from resources.jobs import queue

    content = stored.content or {}
    reg = parse_subscription(content)
    if reg.res_type != ANY and reg.query:
        # the criteria must be a search the server can run, whoever writes them
        unit.repo.search.match(reg.res_type, parse_qsl(reg.query, keep_blank_values=True))
    c = subscription_reg.c
    now = utcnow()
    existing = unit.conn.execute(
        sa.select(subscription_reg).where(c.id == stored.res_id).with_for_update()
    ).first()
    wanted = OFF if content.get("status") == OFF else REQUESTED
    owner = owner_json(unit.repo.security)
    values = {
        "res_type": reg.res_type,
        "query": reg.query,
        "topic": reg.topic,
        "owner": owner,
        "owner_hash": owner_hash(owner),
        "channel": reg.channel,
        "endpoint": reg.endpoint,
        "payload": reg.payload,
        "content": reg.content,
        "headers": reg.headers,
        "heartbeat": reg.heartbeat,
        "updated": now,
    }
    if existing is None:
        unit.conn.execute(
            sa.insert(subscription_reg).values(
                id=stored.res_id,
                status=wanted,
                failures=0,
                error=None,
                created=now,
                **values,
            )
        )
        unit.conn.execute(
            sa.insert(subscription_cursor).values(id=stored.res_id, last_seq=0, delivered_seq=0)
        )
    else:
        same = (existing.channel, existing.endpoint, existing.payload, existing.headers) == (
            reg.channel,
            reg.endpoint,
            reg.payload,
            reg.headers,
        )
        status = existing.status
        if wanted == OFF:
            status = OFF
        elif existing.status == OFF or not same:
            status = REQUESTED  # a new channel is shaken hands with again
        unit.conn.execute(
            sa.update(subscription_reg)
            .where(c.id == stored.res_id)
            .values(
                status=status, failures=0 if status == REQUESTED else existing.failures, **values
            )
        )
    if wanted != OFF:
        queue.enqueue(
            unit, JOB_KIND, stored.res_id, f"Subscription/{stored.res_id}", max_attempts=1 << 30
        )
        wake(unit, [stored.res_id])


def on_delete(unit: Unit, res_type: str, res_id: str) -> None:
    """After a delete: a deleted Subscription's registration and events go with it."""
    if res_type != "Subscription":
        return
    from resources.subscriptions.delivery import spread

    spread(unit)  # the writes it matched are numbered (and go with it), never inherited
    unit.conn.execute(sa.delete(subscription_event).where(subscription_event.c.sub_id == res_id))
    unit.conn.execute(sa.delete(subscription_reg).where(subscription_reg.c.id == res_id))
    unit.conn.execute(sa.delete(subscription_cursor).where(subscription_cursor.c.id == res_id))


def is_server_write() -> bool:
    """Whether the Subscription being written is the server's own status update."""
    return _server_write.get()
