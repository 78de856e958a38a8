"""The subscription topics Hearth offers, found by walking ``resources/subscriptions/topics/``:
every module there that declares ``TOPIC = Topic(...)`` is one topic. There is no central list;
adding a topic is adding its module (docs/extending.md "Add a subscription topic")."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

import resources.subscriptions.topics as package
from resources.subscriptions.topic import Topic


@functools.cache
def topics() -> Mapping[str, Topic]:
    """Every topic, by canonical URL (sorted)."""
    found: dict[str, Topic] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        topic = getattr(module, "TOPIC", None)
        if topic is None:
            continue
        if not isinstance(topic, Topic):
            raise TypeError(f"{module.__name__}.TOPIC is not a Topic")
        if topic.url in found:
            raise ValueError(f"topic {topic.url} is declared twice ({module.__name__})")
        found[topic.url] = topic
    return MappingProxyType(dict(sorted(found.items())))
