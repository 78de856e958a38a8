"""Subscription delivery (``hearth worker``) and the endpoint rules of the Subscriptions a client
writes. Matching and the outbox are storage's (``resources/subscriptions/``); this module sends.

Rest-hook (R4 subscription.html#channels, with the Subscriptions R5 Backport IG's notification
Bundle): a ``POST`` to ``channel.endpoint`` carrying every ``channel.header``; with an empty
``payload`` no body, with ``application/fhir+json`` a ``history`` Bundle whose first entry is the
R4 SubscriptionStatus (``Parameters``: subscription, topic, status, type,
events-since-subscription-start, notification-event with its event-number and focus) and whose
second is the resource as it was written. Every request also carries ``X-Hearth-Subscription``,
``X-Hearth-Notification`` (handshake | event-notification) and ``X-Hearth-Event-Number``, so a
receiver can de-duplicate an event it gets twice (delivery is at-least-once).

Each subscription is one job on the work queue; a worker takes many at once (a thread each, at
most ``HEARTH_SUBSCRIPTION_THREADS``), so a slow or dead endpoint holds only its own
subscription back, retried with an exponential back-off up to
``HEARTH_SUBSCRIPTION_MAX_BACKOFF_SECONDS``, every event kept until it is received.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx

from fhir_server.rest.context import Context
from fhir_server.runtime.settings import Settings
from resources.errors import Invalid
from resources.jobs import queue
from resources.storage.repository import Repository, Unit, WriteResult
from resources.subscriptions import delivery, outbox

log = logging.getLogger(__name__)
BATCH = 50  # events read (and acknowledged in one transaction) at a time per subscription
CLAIM_PER_THREAD = 8  # jobs claimed per pass, per delivery thread
HEARTBEAT_CHECK = 0.5  # seconds between looks for heartbeats due
PRUNE_EVERY = 60.0  # seconds between retention passes (``delivery.prune``)
ACK_EVERY = 0.05  # seconds: acknowledgements of finished subscriptions are grouped this long

STATUS_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-status-r4"
)


def endpoint_problem(settings: Settings, endpoint: str) -> str | None:
    """Why ``endpoint`` (a rest-hook URL or an email channel's ``mailto:``) may not be notified
    under ``settings`` (None: it may)."""
    if endpoint.startswith("mailto:"):
        if settings.smtp() is None:
            return "email Subscriptions need an SMTP server (HEARTH_SMTP_HOST)"
        prefixes = settings.subscription_prefixes
        if prefixes and not any(endpoint.startswith(p) for p in prefixes):
            return f"email endpoint {endpoint!r} is not in HEARTH_SUBSCRIPTION_ENDPOINTS"
        return None
    if not endpoint.startswith("https://") and not (
        settings.subscription_allow_http and endpoint.startswith("http://")
    ):
        return (
            f"rest-hook endpoint {endpoint!r} must be https "
            "(plain http only with HEARTH_SUBSCRIPTION_ALLOW_HTTP, for development)"
        )
    prefixes = settings.subscription_prefixes
    if prefixes and not any(endpoint.startswith(p) for p in prefixes):
        return f"rest-hook endpoint {endpoint!r} is not in HEARTH_SUBSCRIPTION_ENDPOINTS"
    return None


def install(ctx: Context) -> None:
    """The write hook that refuses a Subscription whose endpoint the settings do not allow."""
    settings = ctx.settings

    def check(u: Unit, result: WriteResult) -> None:
        stored = result.stored
        if stored.res_type != "Subscription" or outbox.is_server_write():
            return
        channel = (stored.content or {}).get("channel") or {}
        if channel.get("type") not in ("rest-hook", "email"):
            return
        endpoint = str(channel.get("endpoint", ""))
        problem = endpoint_problem(settings, endpoint)
        if problem is not None:
            raise Invalid(problem, expression=["Subscription.channel.endpoint"])

    ctx.repo.write_hooks.append(check)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(
    base: str, reg: delivery.Reg, kind: str, event: delivery.Event | None, status: str
) -> dict:
    """The R4 SubscriptionStatus (Backport IG: a ``Parameters`` with its profile)."""
    params: list[dict] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{reg.id}"}},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {
            "name": "events-since-subscription-start",
            "valueString": str(event.seq if event is not None else reg.last_seq),
        },
    ]
    empty = event is not None and event.shown == "empty"
    if reg.topic is not None and not empty:  # IG: SHOULD NOT be present with empty payloads
        params.insert(1, {"name": "topic", "valueCanonical": reg.topic})
    if event is not None:
        params.append(event_parameter(base, event))
    return {
        "resourceType": "Parameters",
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def event_parameter(base: str, event: delivery.Event) -> dict:
    """One ``notification-event``: its number, time and focus (``Type/id/_history/version``)."""
    ref = f"{event.res_type}/{event.res_id}/_history/{event.version}"
    parts: list[dict] = [
        {"name": "event-number", "valueString": str(event.seq)},
        {"name": "timestamp", "valueInstant": _instant(event.created)},
    ]
    if event.shown != "empty":  # an empty payload names no resource
        parts.append({"name": "focus", "valueReference": {"reference": f"{base}/{ref}"}})
    return {"name": "notification-event", "part": parts}


def notification(
    base: str,
    reg: delivery.Reg,
    kind: str,
    event: delivery.Event | None,
    status: str,
) -> dict:
    """The Backport IG notification Bundle (type ``history``) of one event or a handshake."""
    entries: list[dict] = []
    if event is not None and event.content is not None:
        entries.append(
            {
                "fullUrl": f"{base}/{event.res_type}/{event.res_id}",
                "resource": event.content,
                "request": {"method": "PUT", "url": f"{event.res_type}/{event.res_id}"},
                "response": {"status": "200"},
            }
        )
    elif event is not None and event.shown == "id-only":  # (``_send``)
        entries.append(id_only_entry(base, event))
    status_entry = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": status_parameters(base, reg, kind, event, status),
        "request": {"method": "GET", "url": f"Subscription/{reg.id}/$status"},
        "response": {"status": "200"},
    }
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": _now(),
        "entry": [status_entry, *entries],
    }


def id_only_entry(base: str, event: delivery.Event) -> dict:
    """An event's entry without its resource (Backport IG ``id-only``: the ``fullUrl``, and the
    request a receiver reads it with, its own access deciding)."""
    ref = f"{event.res_type}/{event.res_id}/_history/{event.version}"
    return {
        "fullUrl": f"{base}/{event.res_type}/{event.res_id}",
        "request": {"method": "GET", "url": ref},
    }


def _instant(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


class Deliverer:
    """Claims subscription jobs and delivers each subscription's events in order."""

    def __init__(self, repo: Repository, settings: Settings, worker: str) -> None:
        self.repo = repo
        self.settings = settings
        self.worker = worker
        self.base = settings.base_url.rstrip("/") + "/fhir"
        # A job's lease outlasts a few requests; a batch stops early to renew it in time.
        self.lease = timedelta(
            seconds=max(settings.worker_lease_seconds, settings.subscription_timeout_seconds * 3)
        )
        self.pool = ThreadPoolExecutor(settings.subscription_threads, "hearth-subscription")
        self.http = httpx.Client(
            timeout=settings.subscription_timeout_seconds,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.subscription_threads * 2),
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()

    def run_once(self) -> int:
        """Claim what is runnable now, deliver it (in parallel); how many jobs it took.

        Active subscriptions with events waiting (the common case) are read in one query, their
        notifications sent in parallel (a thread per subscription, its events in order) and
        acknowledged together in one transaction per group that finished; the rest
        (handshakes, failing endpoints, websockets, backlogs) take ``deliver``."""
        if not delivery.runnable(self.repo):
            return 0
        delivery.spread_all(self.repo)  # matched writes become numbered events, their jobs woken
        jobs = queue.claim(
            self.repo,
            [outbox.JOB_KIND],
            self.worker,
            limit=self.settings.subscription_threads * CLAIM_PER_THREAD,
            lease=self.lease,
        )
        if not jobs:
            return 0
        state = delivery.pending_many(self.repo, [job.key for job in jobs], BATCH)
        simple: list[tuple[queue.Job, delivery.Reg, list[delivery.Event]]] = []
        rest: list[queue.Job] = []
        for job in jobs:
            reg, events = state.get(job.key, (None, []))
            if (
                reg is not None
                and reg.channel in ("rest-hook", "email")
                and reg.status == outbox.ACTIVE
                and events
                and endpoint_problem(self.settings, reg.endpoint) is None
            ):
                simple.append((job, reg, events))
            else:
                rest.append(job)
        futures = {self.pool.submit(self._send_events, reg, events): (job, reg, events)
                   for job, reg, events in simple}  # fmt: skip
        acks: list[tuple[queue.Job, int, bool]] = []
        flushed = time.monotonic()
        left = len(futures)
        for future in as_completed(futures):
            left -= 1
            job, reg, events = futures[future]
            try:
                sent, problem = future.result()
            except Exception:  # the lease expires and another pass tries again
                log.exception("Subscription/%s: delivery failed", job.key)
                continue
            if problem is not None:
                if sent > reg.delivered_seq:  # what was taken is acknowledged, then the failure
                    delivery.delivered(
                        self.repo, job, self.worker, job.key, sent, settle=False, lease=self.lease
                    )
                self._failed(job, problem)
                continue
            if sent > reg.delivered_seq:
                settle = sent == events[-1].seq and len(events) < BATCH
                acks.append((job, sent, settle))
            if sent < events[-1].seq or len(events) >= BATCH:
                rest.append(job)  # more to send: the general path goes on from here
            if acks and (not left or time.monotonic() - flushed > ACK_EVERY):
                self._acknowledge(acks, rest)
                acks, flushed = [], time.monotonic()
        if acks:
            self._acknowledge(acks, rest)
        for _ in self.pool.map(self._deliver_safely, rest):
            pass
        return len(jobs)

    def heartbeats(self) -> int:
        """Send a ``heartbeat`` notification to each subscription whose heartbeatPeriod passed
        with nothing sent (Backport IG); a failed one is logged (events keep their own retries)."""
        due = delivery.heartbeats_due(self.repo)
        for reg, problem in zip(
            due,
            self.pool.map(lambda r: self._send(r, "heartbeat", None, r.status), due),
            strict=True,
        ):
            if problem is not None:
                log.info("Subscription/%s: %s", reg.id, problem)
        return len(due)

    def prune(self, now: datetime | None = None) -> int:
        """Delete the events every receiver has that are older than
        ``HEARTH_SUBSCRIPTION_RETENTION_DAYS`` (``delivery.prune``, small transactions); how
        many went."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.settings.subscription_retention_days)
        deleted = delivery.prune(self.repo, cutoff)
        if deleted:
            log.info("subscription retention: %d delivered event(s) deleted", deleted)
        return deleted

    def _acknowledge(self, acks: list[tuple[queue.Job, int, bool]], rest: list[queue.Job]) -> None:
        """One transaction for every acknowledgement in ``acks``; a job whose subscription got
        new events meanwhile goes on in ``rest``."""
        try:
            outcomes = delivery.delivered_many(self.repo, self.worker, acks, self.lease)
        except Exception:  # nothing acknowledged: the leases expire, the events are re-sent
            log.exception("subscription acknowledgements failed")
            return
        for job, _, _ in acks:
            if outcomes.get(job.key) == "more" and job not in rest:
                rest.append(job)

    def _send_events(
        self, reg: delivery.Reg, events: list[delivery.Event]
    ) -> tuple[int, str | None]:
        """Send ``events`` in order until one fails or the lease needs renewing: (the number of
        the last one taken, why the next was not)."""
        sent = reg.delivered_seq
        renew_by = (
            time.monotonic()
            + self.lease.total_seconds()
            - 1.5 * self.settings.subscription_timeout_seconds
        )
        for event in events:
            if sent > reg.delivered_seq and time.monotonic() > renew_by:
                break
            problem = self._send(reg, "event-notification", event, reg.status)
            if problem is not None:
                return sent, problem
            sent = event.seq
        return sent, None

    def _failed(self, job: queue.Job, problem: str) -> None:
        settings = self.settings
        delay = delivery.failed(
            self.repo, job, self.worker, job.key, problem,
            error_after=settings.subscription_error_after,
            backoff=timedelta(seconds=0.5),
            max_backoff=timedelta(seconds=settings.subscription_max_backoff_seconds),
        )  # fmt: skip
        log.info("Subscription/%s: %s; next try in %s", job.key, problem, delay)

    def run_forever(self, stop: threading.Event, *, notify: bool = True) -> None:
        wakeup = queue.Wakeup(self.repo, [outbox.JOB_KIND], notify=notify)
        wakeup.start()
        try:
            next_beat = next_prune = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT_CHECK
                    try:
                        self.heartbeats()
                    except Exception:
                        log.exception("subscription heartbeats failed")
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    try:
                        self.prune()
                    except Exception:  # the next pass tries again
                        log.exception("subscription retention pass failed")
                try:
                    busy = self.run_once()
                except Exception:  # the queue retries what failed
                    log.exception("subscription delivery pass failed")
                    busy = 0
                if not busy:
                    wakeup.wait(self.settings.subscription_poll_seconds, stop)
        finally:
            wakeup.close()

    def _deliver_safely(self, job: queue.Job) -> None:
        try:
            self.deliver(job)
        except Exception:  # the lease expires and another pass tries again
            log.exception("Subscription/%s: delivery failed", job.key)

    def deliver(self, job: queue.Job) -> None:
        sub_id = job.key
        settings = self.settings
        lease = self.lease
        while True:
            reg, events = delivery.pending(self.repo, sub_id, BATCH)
            if reg is None or reg.status == outbox.OFF:
                delivery.drop(self.repo, job, self.worker)
                return
            if reg.channel == "websocket":
                # nothing to send from here: bound websockets read the outbox (``websocket.py``)
                if reg.status in (outbox.REQUESTED, outbox.ERROR):
                    seq = reg.delivered_seq
                    delivery.delivered(
                        self.repo, job, self.worker, sub_id, seq, settle=False, lease=lease
                    )
                delivery.drop(self.repo, job, self.worker)
                return
            problem = endpoint_problem(settings, reg.endpoint)
            if problem is None and reg.status == outbox.REQUESTED:
                problem = self._send(reg, "handshake", None, outbox.REQUESTED)
                if problem is None:
                    seq = reg.delivered_seq
                    outcome = delivery.delivered(
                        self.repo, job, self.worker, sub_id, seq, settle=False, lease=lease
                    )
                    if outcome != "more":
                        return
                    continue
            sent = reg.delivered_seq
            # a batch stops early to renew the lease before it runs out
            renew_by = (
                time.monotonic()
                + lease.total_seconds()
                - 1.5 * settings.subscription_timeout_seconds
            )
            for event in events:
                if problem is not None:
                    break
                if sent > reg.delivered_seq and time.monotonic() > renew_by:
                    break
                problem = self._send(reg, "event-notification", event, reg.status)
                if problem is None:
                    sent = event.seq
            if problem is None or sent > reg.delivered_seq:
                # one transaction for the batch: a crash before it re-sends the batch (receivers
                # de-duplicate on the event number)
                complete = not events or sent == events[-1].seq
                settle = problem is None and complete and len(events) < BATCH
                outcome = delivery.delivered(
                    self.repo, job, self.worker, sub_id, sent, settle=settle, lease=lease
                )
                if outcome in ("finished", "lost"):
                    return
            if problem is not None:
                delay = delivery.failed(
                    self.repo, job, self.worker, sub_id, problem,
                    error_after=settings.subscription_error_after,
                    backoff=timedelta(seconds=0.5),
                    max_backoff=timedelta(seconds=settings.subscription_max_backoff_seconds),
                )  # fmt: skip
                log.info("Subscription/%s: %s; next try in %s", sub_id, problem, delay)
                return

    def _send(
        self, reg: delivery.Reg, kind: str, event: delivery.Event | None, status: str
    ) -> str | None:
        """Send one notification on the Subscription's channel; None when it was taken. It
        carries what the Subscription asked for (Backport IG payload content), never more than
        the owner may read (``outbox.payload_content``): where it may only know of the resource
        (SMART ``s`` without ``r``), ``full-resource`` becomes ``id-only``."""
        if event is not None:
            shown = outbox.payload_content(reg.content, reg.owner, event.res_type)
            if shown != "full-resource":
                event = replace(event, content=None, shown=shown)
        if reg.channel == "email":
            return self._mail(reg, kind, event, status)
        return self._post(reg, kind, event, status)

    def _post(
        self, reg: delivery.Reg, kind: str, event: delivery.Event | None, status: str
    ) -> str | None:
        """POST one notification; None when the endpoint answered 2xx, else why not."""
        headers: dict[str, str] = {}
        for line in reg.headers:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        headers["X-Hearth-Subscription"] = reg.id
        headers["X-Hearth-Notification"] = kind
        headers["X-Hearth-Event-Number"] = str(event.seq if event is not None else 0)
        body: bytes | None = None
        if reg.payload:
            status = outbox.ACTIVE if status == outbox.ERROR else status
            body = _payload(self.base, reg, kind, event, status)
            headers["Content-Type"] = reg.payload
        try:
            answer = self.http.post(reg.endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{kind} to {reg.endpoint} failed: {type(exc).__name__}: {exc}"[:500]
        if 200 <= answer.status_code < 300:
            return None
        return f"{kind} to {reg.endpoint} answered HTTP {answer.status_code}"

    def _mail(
        self, reg: delivery.Reg, kind: str, event: delivery.Event | None, status: str
    ) -> str | None:
        """E-mail one notification to the ``mailto:`` address; None when the SMTP server took
        it. The text names the Subscription and the event number, never the resource's
        content: the content travels only as the payload the subscriber asked for (an
        attachment, or the focus and its narrative for ``text/plain``)."""
        from workflow import mail

        address = reg.endpoint[len("mailto:") :]
        subject = next(
            (
                value.strip()
                for name, _, value in (h.partition(":") for h in reg.headers)
                if name.strip().lower() == "subject"
            ),
            None,
        )
        seq = event.seq if event is not None else 0
        link = f"{self.base}/Subscription/{reg.id}"
        if kind == "handshake":
            subject = subject or f"Hearth: Subscription/{reg.id} is active"
            lines = [
                f"Notifications of Subscription/{reg.id} will be sent to this address.",
                f"Subscription: {link}",
            ]
        elif kind == "heartbeat":
            subject = subject or f"Hearth: Subscription/{reg.id} heartbeat"
            lines = [
                f"Subscription/{reg.id} is active; nothing new since the last message "
                f"({reg.last_seq} events since it started).",
                f"Subscription: {link}",
            ]
        else:
            subject = subject or f"Hearth: Subscription/{reg.id} event {seq}"
            lines = [
                f"Subscription/{reg.id} has a new event (event number {seq}).",
                f"What changed, read with your own access: {link}/$events"
                f"?eventsSinceNumber={seq}&eventsUntilNumber={seq}",
            ]
        if reg.payload == "text/plain" and event is not None and event.shown != "empty":
            lines.append(f"Focus: {event.res_type}/{event.res_id}/_history/{event.version}")
            narrative = _narrative(event.content)
            if narrative:
                lines += ["", narrative]
        attachments: list[tuple[str, str, bytes]] = []
        if reg.payload in ("application/fhir+json", "application/fhir+xml"):
            status = outbox.ACTIVE if status == outbox.ERROR else status
            name = "notification." + ("xml" if reg.payload.endswith("xml") else "json")
            attachments.append(
                (name, reg.payload, _payload(self.base, reg, kind, event, status) or b"")
            )
        try:
            mail.send(self.settings.smtp(), address, subject, "\n".join(lines) + "\n", attachments)
        except mail.MailError as exc:
            return f"{kind} to {reg.endpoint} failed: {exc}"[:500]
        return None


def _payload(
    base: str, reg: delivery.Reg, kind: str, event: delivery.Event | None, status: str
) -> bytes | None:
    """The notification Bundle in the Subscription's payload format (JSON or XML)."""
    import json

    bundle = notification(base, reg, kind, event, status)
    if reg.payload == "application/fhir+xml":
        from mappings.fhir_xml import to_xml

        return to_xml(bundle)
    if reg.payload == "application/fhir+json":
        return json.dumps(bundle, separators=(",", ":")).encode()
    return None


def _narrative(content: dict | None) -> str:
    """A resource's narrative (``text.div``) as plain text, or ''."""
    import html
    import re

    div = ((content or {}).get("text") or {}).get("div")
    if not isinstance(div, str):
        return ""
    text = re.sub(r"<(br|p|div|tr|li|h[1-6])\b[^>]*>", "\n", div, flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())[:4000]
