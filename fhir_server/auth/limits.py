"""Rate limits and the bound on concurrent password hashing, for every endpoint that checks a
password or a client credential.

- Password endpoints (login form, TOTP enrolment, password reset request and confirmation):
  ``HEARTH_LOGIN_RATE_PER_ACCOUNT`` attempts a minute per account and
  ``HEARTH_LOGIN_RATE_PER_IP`` per client address. Refused attempts get 429 with
  ``Retry-After`` and cost no hashing: the limit is checked before the argon2 work.
- Client authentication (``/auth/token``, ``/auth/revoke``, ``/auth/introspect``):
  ``HEARTH_CLIENT_RATE_PER_CLIENT`` requests a minute per client id and
  ``HEARTH_CLIENT_RATE_PER_IP`` per client address.
- At most ``HEARTH_PASSWORD_CHECK_CONCURRENCY`` argon2 verifications or hashes run at once in a
  process; an attempt that finds them all busy is answered 503 with ``Retry-After`` at once
  (it does not wait in the thread pool the FHIR API needs).

The counters are token buckets in the process's memory (a burst of ``rate`` at once, then
``rate`` a minute): with ``HEARTH_WORKERS`` > 1 each worker counts on its own, so the effective
limit is up to N times the setting. The lockout (``users.check_login``) is in the database and
holds across workers. The client address is the TCP peer: behind a reverse proxy every client
shares the proxy's address, so raise ``HEARTH_LOGIN_RATE_PER_IP`` there.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from fhir_server.runtime.settings import Settings

MAX_KEYS = 100_000  # buckets kept per limiter; the least recently used go first


class Refused(Exception):
    """An attempt refused before any work: ``status`` 429 (rate) or 503 (hashing busy)."""

    def __init__(self, status: int, retry_after: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.retry_after = retry_after
        self.description = description

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Buckets:
    """Token buckets by key: ``rate`` at once, refilled at ``rate`` per ``period`` seconds."""

    def __init__(self, rate: int, period: float = 60.0) -> None:
        self.rate = rate
        self.per_second = rate / period
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.rate), now))
        return min(float(self.rate), tokens + (now - at) * self.per_second)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may make an attempt (0: now). Call with the lock held."""
        level = self._level(key, now)
        return 0.0 if level >= 1 else (1 - level) / self.per_second

    def take(self, key: str, now: float) -> None:
        level = self._level(key, now)
        self._buckets[key] = (level - 1, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)


class Limits:
    def __init__(self, settings: Settings) -> None:
        self._lock = threading.Lock()
        self.login_ip = Buckets(settings.login_rate_per_ip)
        self.login_account = Buckets(settings.login_rate_per_account)
        self.client_ip = Buckets(settings.client_rate_per_ip)
        self.client_id = Buckets(settings.client_rate_per_client)
        self.hashing = threading.BoundedSemaphore(settings.password_check_concurrency)

    def _attempt(self, pairs: list[tuple[Buckets, str | None]], what: str) -> None:
        now = time.monotonic()
        checked = [(b, k) for b, k in pairs if k]
        with self._lock:
            wait = max((b.wait(k, now) for b, k in checked), default=0.0)  # type: ignore[arg-type]
            if wait > 0:
                raise Refused(429, max(1, math.ceil(wait)), f"too many {what}; try again later")
            for b, k in checked:
                b.take(k, now)  # type: ignore[arg-type]

    def password_attempt(self, ip: str | None, account: str | None) -> None:
        """Count a password attempt; ``Refused`` (429) when the address or account is over its
        rate."""
        self._attempt(
            [(self.login_ip, ip), (self.login_account, (account or "")[:128] or None)],
            "sign-in attempts",
        )

    def client_attempt(self, ip: str | None, client_id: str | None) -> None:
        self._attempt(
            [(self.client_ip, ip), (self.client_id, (client_id or "")[:128] or None)],
            "requests",
        )

    async def hashed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the thread pool while holding one of the hashing slots; ``Refused``
        (503) at once when all are taken."""
        if not self.hashing.acquire(blocking=False):
            raise Refused(503, 1, "the server is busy checking other sign-ins; try again shortly")
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self.hashing.release()
