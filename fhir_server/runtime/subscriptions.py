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

import base64
import http.client
import logging
import threading
import time
import urllib.request
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from queue import Empty, SimpleQueue
from urllib.parse import unquote, urlsplit

import httpx
import orjson

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
        self.http = Connections(settings.subscription_timeout_seconds)
        self.inflight: dict[str, Future] = {}  # subscription id: its send running in the pool
        self.results: SimpleQueue[
            tuple[queue.Job, delivery.Reg | None, list[delivery.Event], Future]
        ] = SimpleQueue()  # finished sends, for the loop to record
        self.kick = threading.Event()  # set when a send finished or a write woke the workers
        self.held: dict[str, queue.Job] = {}  # claimed jobs with more to send next turn
        # (job, since, seq, settle) not yet written (``delivery.delivered_many``)
        self.acks: list[tuple[queue.Job, int, int, bool]] = []
        self.acks_since = 0.0  # when the oldest of them finished
        self.woken = threading.Event()  # set when a write woke the workers (NOTIFY)
        self.woken_now = False  # this turn follows a NOTIFY
        self.beating: set[str] = set()  # subscriptions whose heartbeat is being sent

    def close(self) -> None:
        self.drain(send_on=False)
        self.pool.shutdown(wait=True)
        self.http.close()

    def run_once(self) -> int:
        """One whole pass (``hearth worker --once``): claim what is runnable now, deliver it and
        wait until every send of the pass is over; how many jobs it took."""
        _, taken = self.step()
        self.drain()
        return taken

    def drain(self, *, send_on: bool = True) -> None:
        """Wait for the sends in flight and record their outcomes. A subscription with more to
        send is sent on (``--once``: the pass ends when nothing it took is left), or, without
        ``send_on`` (stopping), put back for any worker at once."""
        while self.inflight or self.acks or (send_on and self.held):
            if send_on and self.held:
                self.step(look=False)
            if self.inflight:
                self.kick.wait(0.1)
                self.kick.clear()
            self._collect(flush=True)
        for job in self.held.values():

            def put_back(u: Unit, job: queue.Job = job) -> bool:
                return queue.release(u, job, self.worker, timedelta(0))

            try:
                self.repo.run(put_back)
            except Exception:  # its lease runs out instead
                log.exception("Subscription/%s: could not put its job back", job.key)
        self.held.clear()

    def step(self, *, look: bool = True) -> tuple[int, int]:
        """One turn of the delivery loop, never waiting for a send: record the outcomes of the
        sends that finished, then (with ``look``) claim what is runnable now, up to the free
        capacity, and start sending it and what has more to send. Returns (sends finished,
        jobs started).

        Active subscriptions with events waiting (the common case) are read in one query and
        their notifications sent in the pool (a task per subscription, its events in order);
        their acknowledgements are written together (``_collect``). A subscription that got
        more events meanwhile stays claimed and is read again with the next turn's. The rest
        (handshakes, failing endpoints, websockets) take ``deliver``. A send that hangs holds
        only its own task: the loop goes on claiming and sending the other subscriptions'
        events meanwhile."""
        done = self._collect()
        held, self.held = list(self.held.values()), {}
        capacity = (
            self.settings.subscription_threads * CLAIM_PER_THREAD - len(self.inflight) - len(held)
        )
        claimed: list[queue.Job] = []
        if look and capacity > 0:
            # a NOTIFY says there is work (a write, or jobs another process woke): no need to
            # look first; otherwise one read says whether a claim (on SQLite a write
            # transaction) can find anything
            ready, unspread = (True, True) if self.woken_now else delivery.waiting(self.repo)
            # matched writes become numbered events; the jobs not running are woken
            woken = delivery.spread_all(self.repo) if unspread else 0
            if ready or woken:
                claimed = queue.claim(
                    self.repo, [outbox.JOB_KIND], self.worker, limit=capacity, lease=self.lease
                )
        elif held:
            delivery.spread_all(self.repo)
        self.woken_now = False
        # ours already (a lease that ran out while it was sending or waiting for its
        # acknowledgement, claimed again by us): that send acknowledges it
        busy = {job.key for job in held} | set(self.inflight) | {a[0].key for a in self.acks}
        jobs = held + [job for job in claimed if job.key not in busy]
        if not jobs:
            return done, 0
        state = delivery.pending_many(self.repo, [job.key for job in jobs], BATCH, spread=False)
        for job in jobs:
            reg, events = state.get(job.key, (None, []))
            if (
                reg is not None
                and reg.channel in ("rest-hook", "email")
                and reg.status == outbox.ACTIVE
                and events
                and endpoint_problem(self.settings, reg.endpoint) is None
            ):
                self._start(job, reg, events)
            else:
                self._start(job, None, [])
        return done, len(jobs)

    def _start(
        self, job: queue.Job, reg: delivery.Reg | None, events: list[delivery.Event]
    ) -> None:
        """Send in the pool: ``events`` of ``reg`` (acknowledged by ``_collect``), or, without
        ``reg``, the whole ``deliver`` of the job."""
        future: Future
        if reg is None:
            future = self.pool.submit(self._deliver_safely, job)
        else:
            future = self.pool.submit(self._send_events, reg, events)
        self.inflight[job.key] = future

        def finished(f: Future) -> None:
            self.results.put((job, reg, events, f))
            self.kick.set()

        future.add_done_callback(finished)

    def _collect(self, *, flush: bool = False) -> int:
        """Record the outcomes of the sends that finished: failures back off at once; the
        subscriptions that took their events are acknowledged together, one transaction when
        no send is left in flight, when the oldest waited ``ACK_EVERY`` or with ``flush``; one
        that got more events meanwhile is held for the next turn. How many sends finished."""
        count = 0
        while True:
            try:
                job, reg, events, future = self.results.get_nowait()
            except Empty:
                break
            count += 1
            self.inflight.pop(job.key, None)
            if reg is None:
                continue  # ``deliver`` recorded its own outcome
            try:
                sent, problem = future.result()
            except Exception:  # the lease expires and another pass tries again
                log.exception("Subscription/%s: delivery failed", job.key)
                continue
            if problem is not None:
                try:
                    if sent > reg.delivered_seq:  # what was taken is acknowledged, then the failure
                        delivery.delivered(
                            self.repo, job, self.worker, job.key, sent, settle=False,
                            lease=self.lease, since=reg.delivered_seq,
                        )  # fmt: skip
                    self._failed(job, problem)
                except Exception:  # the lease expires and another pass tries again
                    log.exception("Subscription/%s: recording a failure failed", job.key)
                continue
            # sent > reg.delivered_seq: without a problem at least one event was taken
            settle = sent == events[-1].seq and len(events) < BATCH
            if not self.acks:
                self.acks_since = time.monotonic()
            self.acks.append((job, reg.delivered_seq, sent, settle))
        if self.acks and (
            flush or not self.inflight or time.monotonic() - self.acks_since >= ACK_EVERY
        ):
            acks, self.acks = self.acks, []
            try:
                outcomes = delivery.delivered_many(self.repo, self.worker, acks, self.lease)
            except Exception:  # nothing acknowledged: the leases expire, the events are re-sent
                log.exception("subscription acknowledgements failed")
                outcomes = {}
            for job, _, _, _ in acks:
                if outcomes.get(job.key) == "more":  # still ours, its lease renewed
                    self.held[job.key] = job
        return count

    def heartbeats(self) -> int:
        """Send a ``heartbeat`` notification to each subscription whose heartbeatPeriod passed
        with nothing sent (Backport IG), in the pool, without waiting; a failed one is logged
        (events keep their own retries)."""
        due = [reg for reg in delivery.heartbeats_due(self.repo) if reg.id not in self.beating]
        for reg in due:
            self.beating.add(reg.id)
            future = self.pool.submit(self._send, reg, "heartbeat", None, reg.status)

            def sent(f: Future, reg: delivery.Reg = reg) -> None:
                self.beating.discard(reg.id)
                problem = f.exception() or f.result()
                if problem is not None:
                    log.info("Subscription/%s: %s", reg.id, problem)

            future.add_done_callback(sent)
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
        """Deliver until ``stop``. A turn (``step``) runs whenever a send finishes; it looks
        for new jobs (a read, then a claim) when a write woke the workers (PostgreSQL
        ``NOTIFY``, heard by a thread of its own), every ``HEARTH_SUBSCRIPTION_POLL_SECONDS``,
        and again at once while it finds some. Stopping waits for the sends in flight."""
        wakeup = queue.Wakeup(self.repo, [outbox.JOB_KIND], notify=notify)
        wakeup.start()
        listener = None
        if wakeup.listening:
            listener = threading.Thread(
                target=self._listen, args=(wakeup, stop), name="hearth-subscription-listen",
                daemon=True,
            )  # fmt: skip
            listener.start()
        poll = self.settings.subscription_poll_seconds
        try:
            next_beat = next_look = next_prune = 0.0
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + HEARTBEAT_CHECK
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
                self.kick.clear()
                look = self.woken.is_set() or now >= next_look
                if look:
                    self.woken_now = self.woken.is_set()
                    self.woken.clear()
                    next_look = now + poll
                try:
                    _, taken = self.step(look=look)
                except Exception:  # the queue retries what failed
                    log.exception("subscription delivery pass failed")
                    taken = 0
                if look and taken:
                    next_look = 0.0  # there may be more runnable than it could take
                wait = min(next_look, next_beat) - time.monotonic()
                if self.acks:
                    wait = min(wait, self.acks_since + ACK_EVERY - time.monotonic())
                if wait > 0:
                    self.kick.wait(wait)
            self.drain(send_on=False)
        finally:
            if listener is not None:
                listener.join(timeout=5)
            wakeup.close()

    def _listen(self, wakeup: queue.Wakeup, stop: threading.Event) -> None:
        """Turn the loop as soon as a write's ``NOTIFY`` arrives."""
        while not stop.is_set():
            if wakeup.wait(0.25, stop):  # short: stopping joins this thread
                self.woken.set()
                self.kick.set()

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
                    self.repo, job, self.worker, sub_id, sent, settle=settle, lease=lease,
                    since=reg.delivered_seq,
                )  # fmt: skip
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
            status_code = self.http.post(reg.endpoint, body, headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return f"{kind} to {reg.endpoint} failed: {type(exc).__name__}: {exc}"[:500]
        if 200 <= status_code < 300:
            return None
        return f"{kind} to {reg.endpoint} answered HTTP {status_code}"

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


class Connections:
    """Keep-alive HTTP/1.1 connections to rest-hook endpoints (``http.client``), one set per
    delivery thread, so a notification costs one request on an open connection, not a new
    connection (nor a pool shared under a lock). Every socket operation of an attempt times out
    after ``timeout`` seconds: an endpoint that accepts the connection and never answers fails
    that attempt, in its own thread only. An endpoint that the environment sends through a proxy
    (``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY``) is posted to with httpx, which honours them."""

    KEEP = 32  # connections a thread keeps open (the least recently used one closes first)
    MAX_ANSWER = 1 << 16  # bytes of an answer's body read; beyond, the connection is closed

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.local = threading.local()
        self.tls = httpx.create_ssl_context()  # the CA certificates httpx (and its settings) use
        self.lock = threading.Lock()
        self.every: list[http.client.HTTPConnection] = []
        self.proxies = urllib.request.getproxies()
        self.proxied: dict[tuple[str, str], bool] = {}
        self.proxy_client: httpx.Client | None = None

    def post(self, endpoint: str, body: bytes | None, headers: dict[str, str]) -> int:
        """POST ``body`` to ``endpoint``; the answer's status code (OSError, HTTPException or
        ValueError when there is none)."""
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint!r}")
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = {"User-Agent": "Hearth", **headers}
        if url.username is not None:
            user = f"{unquote(url.username)}:{unquote(url.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        if self._proxied(url.scheme, url.hostname):
            return self._via_proxy(endpoint, body, headers)
        key = (url.scheme, url.hostname, url.port)
        for attempt in range(2):
            conn, reused = self._connection(key)
            try:
                conn.request("POST", target, body=body, headers=headers)
                answer = conn.getresponse()
                answer.read(self.MAX_ANSWER)
                if not answer.isclosed() or answer.will_close:
                    self._drop(key)  # a longer answer is not read to its end, or it closes
                return answer.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(key)
                if reused and attempt == 0:
                    continue  # the endpoint closed a kept connection meanwhile: a new one
                raise
            except BaseException:
                self._drop(key)
                raise
        raise AssertionError("unreachable")

    def _proxied(self, scheme: str, host: str) -> bool:
        known = self.proxied.get((scheme, host))
        if known is None:
            known = scheme in self.proxies and not urllib.request.proxy_bypass(host)
            self.proxied[(scheme, host)] = known
        return known

    def _via_proxy(self, endpoint: str, body: bytes | None, headers: dict[str, str]) -> int:
        with self.lock:
            if self.proxy_client is None:
                self.proxy_client = httpx.Client(timeout=self.timeout, follow_redirects=False)
            client = self.proxy_client
        try:
            return client.post(endpoint, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from exc

    def _connection(
        self, key: tuple[str, str, int | None]
    ) -> tuple[http.client.HTTPConnection, bool]:
        kept: dict = self.local.__dict__.setdefault("kept", {})
        conn = kept.pop(key, None)
        reused = conn is not None
        if conn is None:
            scheme, host, port = key
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=self.tls
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            with self.lock:
                self.every.append(conn)
            while len(kept) >= self.KEEP:
                self._close(kept.pop(next(iter(kept))))
        kept[key] = conn  # the most recently used last
        return conn, reused

    def _drop(self, key: tuple[str, str, int | None]) -> None:
        conn = self.local.__dict__.get("kept", {}).pop(key, None)
        if conn is not None:
            self._close(conn)

    def _close(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self.lock:
            if conn in self.every:
                self.every.remove(conn)

    def close(self) -> None:
        with self.lock:
            every, self.every = self.every, []
        for conn in every:
            conn.close()
        if self.proxy_client is not None:
            self.proxy_client.close()


def _payload(
    base: str, reg: delivery.Reg, kind: str, event: delivery.Event | None, status: str
) -> bytes | None:
    """The notification Bundle in the Subscription's payload format (JSON or XML)."""
    bundle = notification(base, reg, kind, event, status)
    if reg.payload == "application/fhir+xml":
        from mappings.fhir_xml import to_xml

        return to_xml(bundle)
    if reg.payload == "application/fhir+json":
        return orjson.dumps(bundle)
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
