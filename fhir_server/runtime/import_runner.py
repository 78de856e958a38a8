"""Runs Bulk Data import jobs (``$import``, docs/bulk-import.md): the fetching of each input's
NDJSON under the settings' rules, the audit of every batch written, and the threads that run
jobs inside the API process (each kick-off's job at once, one at a time per process, and every
``SWEEP_SECONDS`` any import job whose runner died). ``hearth worker`` runs the same jobs
(``run_pending``); the work queue's claims keep two runners off one job.

Where a source may be fetched from (``url_problem``): only ``https`` (plain ``http`` only with
``HEARTH_IMPORT_ALLOW_HTTP``, for development), only hosts named in
``HEARTH_IMPORT_ALLOWED_HOSTS`` (empty: no import at all), no credentials in the URL. The
kick-off refuses any other URL before anything is fetched, and the fetcher checks again right
before it connects (the settings may have changed while the job waited). Redirects are not
followed (a redirect could lead anywhere), proxies from the environment are not used, every
connect and read has a timeout, and a source larger than ``HEARTH_IMPORT_MAX_FILE_BYTES`` is cut
off there and reported as that input's error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx

from fhir_server.auth.audit_events import client_agents, import_event, rest_event
from fhir_server.runtime.settings import Settings
from inference.worker_name import worker_name
from resources import audit
from resources.jobs import bulk_import
from resources.storage.repository import Repository, Unit

log = logging.getLogger(__name__)
SWEEP_SECONDS = 60.0


def url_problem(settings: Settings, url: str) -> str | None:
    """Why ``url`` may not be fetched by ``$import`` under ``settings`` (None: it may)."""
    hosts = settings.import_hosts
    if not hosts:
        return "$import is not enabled on this server (HEARTH_IMPORT_ALLOWED_HOSTS names no host)"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return f"{url!r} is not a URL"
    scheme = parsed.scheme
    if scheme != "https" and not (settings.import_allow_http and scheme == "http"):
        return (
            f"input url {url!r} must be https "
            "(plain http only with HEARTH_IMPORT_ALLOW_HTTP, for development)"
        )
    if parsed.userinfo:
        return f"input url {url!r} carries credentials; they are not accepted in a URL"
    host = parsed.host.lower()
    port = parsed.port or (443 if scheme == "https" else 80)
    if not host or (host not in hosts and f"{host}:{port}" not in hosts):
        return f"the host of input url {url!r} is not in HEARTH_IMPORT_ALLOWED_HOSTS"
    return None


class Fetcher:
    """A ``bulk_import.Source``: one input's bytes, in chunks, under the settings' rules."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, url: str) -> Iterator[bytes]:
        problem = url_problem(self.settings, url)
        if problem is not None:
            raise bulk_import.SourceError(problem)
        limit = self.settings.import_max_file_bytes
        timeout = httpx.Timeout(self.settings.import_timeout_seconds)
        # no proxies from the environment, no redirects: the allow-list decides where we go
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream("GET", url, headers={"Accept": "application/fhir+ndjson"}) as r,
        ):
            if r.is_redirect:
                raise bulk_import.SourceError(
                    f"the source answered {r.status_code} (a redirect); redirects are not followed"
                )
            if r.status_code >= 500 or r.status_code == 429:
                r.raise_for_status()  # transient: the queue retries the job
            if r.status_code != 200:
                raise bulk_import.SourceError(f"the source answered HTTP {r.status_code}")
            declared = r.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise bulk_import.SourceError(
                    f"the source is {declared} bytes, more than HEARTH_IMPORT_MAX_FILE_BYTES "
                    f"({limit})"
                )
            read = 0
            for chunk in r.iter_bytes():  # as it arrives
                read += len(chunk)
                if read > limit:
                    raise bulk_import.SourceError(
                        f"the source is larger than HEARTH_IMPORT_MAX_FILE_BYTES ({limit}); the "
                        "lines before the limit were imported"
                    )
                yield chunk


def audited_writer(base: str) -> Any:
    """``writer(job)`` for ``bulk_import.run_job``: the repository view that records each
    committed batch as an AuditEvent of the job's client (and user), in the batch's own
    transaction, as the REST gate records a write."""

    def writer(repo: Repository, job: bulk_import.Import) -> Repository:
        def on_commit(unit: Unit) -> None:
            if not unit.written:
                return
            methods = {s.method for s in unit.written}
            interaction = (
                "transaction"
                if len(unit.written) > 1
                else "create"
                if methods == {"POST"}
                else "update"
            )
            event = rest_event(
                base=base,
                interaction=interaction,
                status=200,
                client_id=job.client_id,
                username=job.who.get("username"),
                fhir_user=job.who.get("fhir_user"),
                patient=None,
                ip=None,
                what=[s.ref for s in unit.written],
                detail=f"$import {job.id}",
            )
            audit.append(unit.conn, event)

        return repo.guarded(None, on_commit)

    return writer


def _closing_event(base: str) -> Any:
    def on_done(unit: Unit, job: bulk_import.Import) -> None:
        counts: dict[str, int] = {}
        failed = 0
        for c in job.counts():
            for k in ("created", "updated", "unchanged"):
                counts[k] = counts.get(k, 0) + c[k]
            failed += c["errors"]
        agents = client_agents(job.client_id, job.who.get("username"), job.who.get("fhir_user"))
        event = import_event(
            base=base, agents=agents, job_id=job.id, inputs=[i.url for i in job.spec.inputs],
            counts=counts, failed=failed,
        )  # fmt: skip
        audit.append(unit.conn, event)

    return on_done


def options(repo: Repository, settings: Settings) -> dict:
    """The keyword arguments of ``bulk_import.run_job`` under ``settings``."""
    writer = audited_writer(settings.fhir_base)
    return {
        "max_line": settings.max_body_bytes,
        "lease": timedelta(seconds=settings.worker_lease_seconds),
        "writer": lambda job: writer(repo, job),
        "on_done": _closing_event(settings.fhir_base),
    }


def run_pending(repo: Repository, settings: Settings, worker: str) -> int:
    """The import jobs waiting now (``hearth worker``, the API's sweep); how many ran."""
    return bulk_import.run_pending(repo, Fetcher(settings), worker, **options(repo, settings))


class ImportRunner:
    """Runs import jobs in the API process: each kick-off's job in a background thread (one
    job at a time per process; the others wait their turn), and the sweep."""

    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings
        self._slot = threading.Lock()
        self._stop = threading.Event()

    def submit(self, job_id: str) -> None:
        def target() -> None:
            with self._slot:
                if self._stop.is_set():
                    return  # shutting down: the job stays queued for the next runner
                try:
                    bulk_import.run_now(
                        self.repo, Fetcher(self.settings), job_id, f"api:{worker_name()}",
                        **options(self.repo, self.settings),
                    )  # fmt: skip
                except Exception:  # the entry stays queued; its lease expires, then retried
                    log.exception("bulk import %s stopped", job_id)

        threading.Thread(target=target, name=f"bulk-import-{job_id[:8]}", daemon=True).start()

    def start_sweeper(self, interval: float = SWEEP_SECONDS) -> None:
        def sweep() -> None:
            while not self._stop.wait(interval):
                with self._slot:
                    try:
                        run_pending(self.repo, self.settings, f"api:{worker_name()}")
                    except Exception:
                        log.exception("bulk import sweep failed")

        threading.Thread(target=sweep, name="bulk-import-sweeper", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
