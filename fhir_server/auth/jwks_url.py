"""Key sets of backend clients registered by JWK Set URL (SMART App Launch 2.x, "Client
Authentication: Asymmetric"): where such a URL may point, and its fetching and brief caching.

The rules mirror ``$import``'s (fhir_server/runtime/import_runner.py): only ``https`` (plain
``http`` only with ``HEARTH_JWKS_ALLOW_HTTP``, for development), only hosts named in
``HEARTH_JWKS_ALLOWED_HOSTS`` (empty: no JWKS URL at all), no credentials in the URL; checked at
registration and again right before every fetch. Redirects are not followed, proxies from the
environment are not used, connect and read time out after ``TIMEOUT`` seconds and a body larger
than ``MAX_BYTES`` is refused. Only the *registered* URL is ever fetched.
"""

from __future__ import annotations

import threading
import time

import httpx
import orjson

from fhir_server.runtime.settings import Settings

TIMEOUT = 5.0
MAX_BYTES = 64 * 1024
TTL = 300.0  # a fetched key set is used this long
MIN_REFETCH = 10.0  # an unknown kid forces a re-fetch at most this often per URL


class JwksFetchError(Exception):
    """The registered key set could not be fetched or is not a JWKS."""


def url_problem(settings: Settings, url: str) -> str | None:
    """Why ``url`` may not be a client's JWKS URL under ``settings`` (None: it may)."""
    hosts = settings.jwks_hosts
    if not hosts:
        return "JWKS URLs are not enabled on this server (HEARTH_JWKS_ALLOWED_HOSTS names no host)"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return f"{url!r} is not a URL"
    scheme = parsed.scheme
    if scheme != "https" and not (settings.jwks_allow_http and scheme == "http"):
        return (
            f"JWKS URL {url!r} must be https "
            "(plain http only with HEARTH_JWKS_ALLOW_HTTP, for development)"
        )
    if parsed.userinfo:
        return f"JWKS URL {url!r} carries credentials; they are not accepted in a URL"
    host = parsed.host.lower()
    port = parsed.port or (443 if scheme == "https" else 80)
    if not host or (host not in hosts and f"{host}:{port}" not in hosts):
        return f"the host of JWKS URL {url!r} is not in HEARTH_JWKS_ALLOWED_HOSTS"
    return None


def fetch(settings: Settings, url: str) -> dict:
    """The key set at ``url``, fetched now under the rules above."""
    problem = url_problem(settings, url)
    if problem is not None:
        raise JwksFetchError(problem)
    try:
        with (
            httpx.Client(
                timeout=httpx.Timeout(TIMEOUT), follow_redirects=False, trust_env=False
            ) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as r,
        ):
            if r.status_code != 200:
                raise JwksFetchError(f"the JWKS URL answered HTTP {r.status_code}")
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise JwksFetchError(f"the key set is larger than {MAX_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise JwksFetchError(f"the JWKS URL could not be fetched: {exc}") from exc
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise JwksFetchError("the JWKS URL did not answer JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksFetchError("the JWKS URL did not answer a JWK Set")
    return doc


class Cache:
    """Fetched key sets by URL, each kept ``TTL`` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[float, dict]] = {}

    def get(self, settings: Settings, url: str, *, refresh: bool = False) -> dict:
        """The key set of ``url``; with ``refresh`` (an unknown kid) fetched anew unless it was
        fetched less than ``MIN_REFETCH`` seconds ago."""
        now = time.monotonic()
        with self._lock:
            hit = self._sets.get(url)
        if hit is not None:
            age = now - hit[0]
            if age < TTL and not (refresh and age >= MIN_REFETCH):
                return hit[1]
        doc = fetch(settings, url)
        with self._lock:
            self._sets[url] = (time.monotonic(), doc)
        return doc

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()


CACHE = Cache()
