"""The search terms of one AuditEvent as migration 0006 stored them in ``audit_index``: which values
each AuditEvent search parameter found it by, as ``(parameter, system, value)`` triples. Kept
frozen here for migration 0006's backfill and 0009's downgrade; AuditEvents are indexed by the
search engine since 0009 (``resources.audit.project``).

References are kept as ``Type/id`` (absolute URLs and version suffixes dropped); tokens as
``(system, code)``; strings as written (matched case-insensitively).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import sqlalchemy as sa

audit_index = sa.table(
    "audit_index",
    sa.column("seq", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("system", sa.String),
    sa.column("value", sa.String),
)

_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
MAX_VALUE = 512


def local_ref(reference: str) -> str | None:
    """``http://x/fhir/Patient/1/_history/2`` → ``Patient/1``; None when it is not one."""
    m = _REF.search(reference.strip())
    return m.group(1) if m else None


def _object(value: object) -> dict:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _codings(value: object) -> Iterator[tuple[str | None, str]]:
    """The codings of a Coding, a CodeableConcept, or a list of either."""
    if isinstance(value, list):
        for v in value:
            yield from _codings(v)
    elif isinstance(value, dict):
        if "coding" in value:
            yield from _codings(value["coding"])
        elif isinstance(value.get("code"), str):
            yield value.get("system"), value["code"]


def index_terms(event: dict) -> list[tuple[str, str | None, str]]:
    out: list[tuple[str, str | None, str]] = []

    def add(name: str, system: str | None, value: object) -> None:
        if isinstance(value, str) and value:
            out.append((name, system[:255] if system else None, value[:MAX_VALUE]))

    def ref(name: str, reference: object) -> str | None:
        if isinstance(reference, str):
            local = local_ref(reference)
            if local:
                add(name, None, local)
                return local
        return None

    for system, code in _codings(event.get("type")):
        add("type", system, code)
    for system, code in _codings(event.get("subtype")):
        add("subtype", system, code)
    add("action", "http://hl7.org/fhir/audit-event-action", event.get("action"))
    add("outcome", "http://hl7.org/fhir/audit-event-outcome", event.get("outcome"))
    for agent in event.get("agent") or []:
        if not isinstance(agent, dict):
            continue
        who = _object(agent.get("who"))
        local = ref("agent", who.get("reference"))
        if local and local.startswith("Patient/"):
            add("patient", None, local)
        ident = who.get("identifier")
        if isinstance(ident, dict):
            add("agent-identifier", ident.get("system"), ident.get("value"))
        add("agent-name", None, agent.get("name"))
        add("agent-name", None, who.get("display"))
        add("altid", None, agent.get("altId"))
        for system, code in _codings(agent.get("role")):
            add("agent-role", system, code)
        network = agent.get("network")
        if isinstance(network, dict):
            add("address", None, network.get("address"))
    source = _object(event.get("source"))
    add("site", None, source.get("site"))
    observer = _object(source.get("observer"))
    if not ref("source", observer.get("reference")):
        add("source", None, observer.get("display"))
    for entity in event.get("entity") or []:
        if not isinstance(entity, dict):
            continue
        what = _object(entity.get("what"))
        local = ref("entity", what.get("reference"))
        if local and local.startswith("Patient/"):
            add("patient", None, local)
        for system, code in _codings(entity.get("type")):
            add("entity-type", system, code)
        for system, code in _codings(entity.get("role")):
            add("entity-role", system, code)
        add("entity-name", None, entity.get("name"))
    # One row per distinct term: an event naming Patient/1 as agent and entity is found once.
    return list(dict.fromkeys(out))


def index_rows(conn: sa.Connection, events: list[tuple[int, dict]]) -> None:
    """Store the ``audit_index`` terms of ``(seq, event)`` pairs."""
    terms = [
        {"seq": seq, "name": name, "system": system, "value": value}
        for seq, event in events
        for name, system, value in index_terms(event)
    ]
    if terms:
        conn.execute(sa.insert(audit_index), terms)
