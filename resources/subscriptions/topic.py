"""What a subscription topic declares (one module of ``topics/`` each, found by ``registry``).

A topic is the Backport IG's SubscriptionTopic, reduced to what Hearth evaluates: for each
resource type it watches, search criteria the new version must meet (``query``, evaluated by the
search engine like R4 ``Subscription.criteria``) and, optionally, ``when``: a test of the change
itself (the previous version, None on create, and the new one), e.g. "status became final".
A Subscription names a topic by its ``url`` in ``criteria`` and may narrow it with the Backport
filter extension (``filter_criteria``: a search URL of one of the topic's types).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Change = Callable[[dict | None, dict], bool]

TOPIC_BASE = "http://hearth.local/fhir/SubscriptionTopic/"


@dataclass(frozen=True)
class Trigger:
    """One resource type a topic watches: ``query`` (search pairs, '' for every resource of the
    type) and the optional ``when(previous, current)`` test of the change."""

    res_type: str
    query: str = ""
    when: Change | None = None
    description: str = ""


@dataclass(frozen=True)
class Topic:
    """``code``: the short name (its URL is ``TOPIC_BASE + code``); ``triggers``: what it
    watches; ``any_type``: the topic of "any resource type + criteria", whose Subscription names
    the type and criteria in its filter (it has no triggers of its own)."""

    code: str
    title: str
    description: str
    triggers: tuple[Trigger, ...] = ()
    any_type: bool = False

    @property
    def url(self) -> str:
        return TOPIC_BASE + self.code

    def trigger_for(self, res_type: str) -> Trigger | None:
        return next((t for t in self.triggers if t.res_type == res_type), None)


def status_became(*statuses: str) -> Change:
    """``when``: the resource's ``status`` is now one of ``statuses`` and was not before."""

    def when(previous: dict | None, current: dict) -> bool:
        before = None if previous is None else previous.get("status")
        return current.get("status") in statuses and before not in statuses

    return when


def created(previous: dict | None, current: dict) -> bool:
    """``when``: the resource was created (no previous version)."""
    return previous is None
