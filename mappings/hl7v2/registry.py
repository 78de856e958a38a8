"""The inbound HL7 v2 message types Hearth takes, found by walking ``mappings/hl7v2/messages/``:
every module that declares ``MESSAGE = MessageType(...)`` (``spec.py``) is one message type.
There is no central list; adding a message type is adding its module (docs/extending.md "Add an
HL7 message type"). ``registered(MessageType(...))`` adds one declared elsewhere for as long
as its ``with`` block runs (a plug-in, or a test proving that a dead letter replays once its
message type is mapped)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import mappings.hl7v2.messages as package
from mappings.hl7v2.spec import MessageType

# Declarations added by ``registered`` (beside the modules of messages/).
_added: dict[tuple[str, str], MessageType] = {}


def message_types() -> Mapping[tuple[str, str], MessageType]:
    """Every (message code, trigger event) Hearth takes, with its declaration (sorted)."""
    if not _added:
        return _modules()
    return MappingProxyType(dict(sorted({**_modules(), **_added}.items())))


@contextlib.contextmanager
def registered(declared: MessageType) -> Iterator[MessageType]:
    """Take ``declared``'s message types too while the block runs; a (code, event) already
    taken is a ValueError, as two modules declaring it are."""
    keys = [(declared.code, event) for event in declared.events]
    taken = [f"{c}^{e}" for c, e in keys if (c, e) in message_types()]
    if taken:
        raise ValueError(f"{', '.join(taken)} is declared already")
    for key in keys:
        _added[key] = declared
    try:
        yield declared
    finally:
        for key in keys:
            _added.pop(key, None)


@functools.cache
def _modules() -> Mapping[tuple[str, str], MessageType]:
    found: dict[tuple[str, str], MessageType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        declared = getattr(module, "MESSAGE", None)
        if declared is None:
            continue  # a helper module
        if not isinstance(declared, MessageType):
            raise TypeError(f"{module.__name__}.MESSAGE is not a MessageType")
        for event in declared.events:
            key = (declared.code, event)
            if key in found:
                raise ValueError(f"{declared.code}^{event} is declared twice ({module.__name__})")
            found[key] = declared
    return MappingProxyType(dict(sorted(found.items())))


def codes() -> frozenset[str]:
    return frozenset(code for code, _ in message_types())


def lookup(code: str, event: str) -> MessageType | None:
    return message_types().get((code, event))


def supported() -> list[str]:
    """``CODE^EVENT`` of every message type taken, sorted."""
    return [f"{code}^{event}" for code, event in message_types()]


def writes() -> frozenset[str]:
    """Every FHIR resource type some message type may write, the message's own record
    (``provenance.py``) and the roles of ROL / PRT segments included."""
    from mappings.hl7v2.provenance import RECORD_TYPES

    declared = {t for m in message_types().values() for t in m.writes}
    return frozenset(declared | RECORD_TYPES | {"PractitionerRole"})
