"""The inbound HL7 v2 message types Hearth takes, found by walking ``mappings/hl7v2/messages/``:
every module that declares ``MESSAGE = MessageType(...)`` (``spec.py``) is one message type.
There is no central list; adding a message type is adding its module (docs/extending.md "Add an
HL7 message type")."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

import mappings.hl7v2.messages as package
from mappings.hl7v2.spec import MessageType


@functools.cache
def message_types() -> Mapping[tuple[str, str], MessageType]:
    """Every (message code, trigger event) Hearth takes, with its declaration (sorted)."""
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
