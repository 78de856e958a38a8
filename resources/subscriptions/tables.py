"""The subscription tables: one registration row per stored Subscription (what it matches, for
whom, where it delivers, how far delivery got) and the outbox of its events.

``subscription_reg`` is kept by the repository's write path (``outbox.py``) in the same
transaction as the Subscription resource it mirrors. A matched write adds one
``subscription_write`` row in its own transaction (the change and the ids of every subscription
it matched), so a committed change always has its events and a rolled-back one never has; the
worker (or ``$status`` / ``$events`` / a websocket, whoever reads first) spreads it into
``subscription_event`` rows numbered per subscription (``seq``: events-since-subscription-start)
in commit order (``delivery.spread``).
"""

from __future__ import annotations

import sqlalchemy as sa

from resources.storage.schema import Document, PrimaryKey, UtcDateTime, metadata

subscription_reg = sa.Table(
    "subscription_reg",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the Subscription's logical id
    sa.Column("res_type", sa.String(64), nullable=False),  # the type its criteria select
    sa.Column("query", sa.Text, nullable=False),  # the criteria's query string ('' = all)
    sa.Column("topic", sa.String(256), nullable=True),  # a topic's canonical URL, or None (R4)
    sa.Column("owner", Document, nullable=True),  # the creator's security filter (None: all)
    sa.Column("owner_hash", sa.String(64), nullable=False),  # sha256 of owner's canonical JSON
    sa.Column("status", sa.String(16), nullable=False),  # requested | active | error | off
    sa.Column("channel", sa.String(16), nullable=False),  # rest-hook
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("payload", sa.String(64), nullable=False),  # '' | application/fhir+json
    # the payload content asked for (Backport IG backport-payload-content)
    sa.Column("content", sa.String(16), nullable=False, server_default="full-resource"),
    sa.Column("headers", Document, nullable=False),  # ["Name: value", ...]
    sa.Column("heartbeat", sa.Integer, nullable=True),  # heartbeatPeriod, seconds (Backport IG)
    sa.Column("failures", sa.Integer, nullable=False),  # consecutive failed attempts
    sa.Column("error", sa.Text, nullable=True),  # the last failure
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("updated", UtcDateTime(), nullable=False),
    sa.Index("ix_subscription_reg_type", "res_type", "status"),
)

subscription_event = sa.Table(
    "subscription_event",
    metadata,
    sa.Column("sub_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
)

# One row per matched write, until it is spread into numbered ``subscription_event`` rows.
subscription_write = sa.Table(
    "subscription_write",
    metadata,
    sa.Column("id", PrimaryKey, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("subs", Document, nullable=False),  # ids of the subscriptions it matched
)

# The counters of a subscription, apart from its registration: they change with every numbering
# and acknowledgement, while the registration is read by every matching write (kept free of the
# dead row versions those updates leave on PostgreSQL).
subscription_cursor = sa.Table(
    "subscription_cursor",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the Subscription's logical id
    sa.Column("last_seq", sa.BigInteger, nullable=False),  # newest event number
    sa.Column("delivered_seq", sa.BigInteger, nullable=False),  # newest event received
    sa.Column("sent_at", UtcDateTime(), nullable=True),  # the last notification taken
    # newest event number deleted by the retention pruning (``delivery.prune``); 0: none
    sa.Column("pruned_seq", sa.BigInteger, nullable=False, server_default="0"),
)
