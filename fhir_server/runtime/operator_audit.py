"""Audits what an operator's command (``hearth load``, ``hearth users``) writes: each committed
unit of work gets an AuditEvent in its own transaction, as the REST gate records a request, with
the operator — their OS login and host — and the command as agents (docs/security.md)."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import replace

from fhir_server.auth.audit_events import operator_agents, rest_event
from fhir_server.rest.context import Context
from resources import audit
from resources.storage.repository import Unit


def operator() -> tuple[str, str]:
    """(OS login, host name) of whoever runs the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = f"uid {os.getuid()}"
    return user, socket.gethostname()


def agents_of(command: str) -> list[dict]:
    """The AuditEvent agents of ``command`` run by this process's operator."""
    return operator_agents(*operator(), command)


def audited(ctx: Context, agents: list[dict]) -> Context:
    """``ctx`` with a repository that records each committed write as an AuditEvent."""

    def on_commit(unit: Unit) -> None:
        if not unit.written:
            return
        methods = {s.method for s in unit.written}
        interaction = (
            "transaction"
            if len(unit.written) > 1
            else "create"
            if methods == {"POST"}
            else "delete"
            if methods == {"DELETE"}
            else "update"
        )
        event = rest_event(
            base=ctx.base,
            interaction=interaction,
            status=200,
            client_id=None,
            username=None,
            fhir_user=None,
            patient=None,
            ip=None,
            what=[s.ref for s in unit.written],
            agents=agents,
        )
        audit.append(unit.conn, event)

    return replace(ctx, repo=ctx.repo.guarded(None, on_commit))
