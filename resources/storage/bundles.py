"""FHIR Bundle shapes built from stored versions: searchset, history, and entry responses.

R4 bundle.html and http.html#history: each entry has ``fullUrl``; history entries carry
``request`` and ``response``; transaction/batch responses carry ``response.status`` as
"<code> <reason>", ``location``, ``etag`` and ``lastModified``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from resources.storage.store import Stored, StoredJSON, instant

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_line(code: int) -> str:
    return f"{code} {REASONS.get(code, '')}".strip()


def full_url(base: str, stored: Stored | StoredJSON) -> str:
    return f"{base}/{stored.res_type}/{stored.res_id}"


def links(pairs: Iterable[tuple[str, str | None]]) -> list[dict]:
    return [{"relation": rel, "url": url} for rel, url in pairs if url]


def history_bundle(
    base: str, entries: list[Stored], *, self_url: str, next_url: str | None, total: int | None
) -> dict:
    out: dict = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        out["total"] = total
    out["link"] = links([("self", self_url), ("next", next_url)])
    items = []
    for s in entries:
        entry: dict = {"fullUrl": full_url(base, s)}
        if s.content is not None:
            entry["resource"] = s.content
        if s.method == "POST":
            request = {"method": "POST", "url": s.res_type}
        else:
            request = {"method": s.method, "url": s.ref}
        entry["request"] = request
        response: dict = {
            "status": status_line(201 if s.version == 1 else 204 if s.deleted else 200),
            "etag": s.etag,
            "lastModified": instant(s.last_updated),
        }
        entry["response"] = response
        items.append(entry)
    if items:  # FHIR JSON has no empty arrays (json.html)
        out["entry"] = items
    return out


def searchset_bundle(
    base: str,
    matches: Sequence[Stored | StoredJSON],
    *,
    includes: Sequence[Stored | StoredJSON] = (),
    self_url: str,
    next_url: str | None = None,
    prev_url: str | None = None,
    total: int | None = None,
    outcome: dict | None = None,
    raw: bool = False,
    first_url: str | None = None,
    last_url: str | None = None,
    match_entries: Sequence[tuple[str, dict]] | None = None,
) -> dict:
    """``raw``: resources read as JSON text (``StoredJSON``) go in as ``orjson.Fragment``s,
    spliced into the output by ``orjson.dumps`` as they are, for a caller that only dumps the
    Bundle; otherwise they are decoded. ``match_entries``: (fullUrl, resource) of the matches
    when they are not stored resources of their own (contained resources), instead of
    ``matches``."""
    out: dict = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        out["total"] = total
    out["link"] = links(
        [
            ("self", self_url),
            ("first", first_url),
            ("previous", prev_url),
            ("next", next_url),
            ("last", last_url),
        ]
    )
    entries = [
        {"fullUrl": full_url(base, s), "resource": _body(s, raw), "search": {"mode": "match"}}
        for s in matches
    ]
    if match_entries is not None:
        entries = [
            {"fullUrl": url, "resource": body, "search": {"mode": "match"}}
            for url, body in match_entries
        ]
    entries += [
        {"fullUrl": full_url(base, s), "resource": _body(s, raw), "search": {"mode": "include"}}
        for s in includes
    ]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:  # FHIR JSON has no empty arrays (json.html): no matches, no ``entry``
        out["entry"] = entries
    return out


def _body(stored: Stored | StoredJSON, raw: bool) -> dict | orjson.Fragment | None:
    if isinstance(stored, StoredJSON):
        return stored.fragment if raw else stored.content
    return stored.content
