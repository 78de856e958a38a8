"""Wiring of the AI module into a running Hearth: the write hook that starts analyses by
themselves, and the analyzer an API process or a worker runs jobs with."""

from __future__ import annotations

import logging

from fhir_server.rest.context import Context

log = logging.getLogger(__name__)


def install(ctx: Context) -> None:
    """Register the AI triggers on the repository (when ``HEARTH_AI_TRIGGERS`` is on)."""
    if not ctx.settings.ai_triggers:
        return
    from fhir_server.runtime import events
    from inference import triggers

    ctx.repo.write_hooks.append(triggers.on_write)
    events.install(ctx)


def instance_bytes(ctx: Context):  # type: ignore[no-untyped-def]
    """The Part 10 bytes of the stored DICOM instance with a SOP Instance UID, None when it is
    not stored (the DICOM receiver's store)."""
    from resources.errors import NotFound

    store = ctx.settings.instance_store(ctx.repo.engine)

    def read(sop_uid: str) -> bytes | None:
        try:
            return store.read(sop_uid)
        except NotFound:
            return None

    return read


def analyzer(ctx: Context, worker: str):  # type: ignore[no-untyped-def]
    """An Analyzer for this process (imports torch: only workers and synchronous
    ``$ai-analyze`` calls need it)."""
    from datetime import timedelta

    from fhir_server.runtime import events
    from inference.analysis import Analyzer

    cached = ctx.services.get("ai.analyzer")
    if cached is None:
        cached = Analyzer(
            ctx.services.get("repo", ctx.repo),  # the process's repository, not a request's view
            worker=worker,
            instance_bytes=instance_bytes(ctx),
            backoff=timedelta(seconds=5),
        )
        cached.result_hooks.append(events.record_on_case(cached.repo))
        ctx.services["ai.analyzer"] = cached
    return cached
