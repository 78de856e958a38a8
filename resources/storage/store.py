"""What a stored resource version is, and how a version is stamped (meta) and hashed."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class Stored:
    """One version of one resource as stored; ``content`` is None for a delete tombstone."""

    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: dict | None
    method: str = "PUT"  # the HTTP verb that made this version: POST, PUT, PATCH, DELETE

    @property
    def resource(self) -> dict:
        """``content`` of a live version: what ``Unit.read`` and ``create``/``update`` return is
        never a tombstone, so callers that hold one need no None check."""
        if self.content is None:
            raise ValueError(f"{self.versioned_ref} is a delete tombstone: it has no content")
        return self.content

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def ref(self) -> str:
        return f"{self.res_type}/{self.res_id}"

    @property
    def versioned_ref(self) -> str:
        return f"{self.res_type}/{self.res_id}/_history/{self.version}"


@dataclass(frozen=True)
class StoredJSON:
    """A live resource as the JSON text the database holds, for serving it as it is (no decode
    and re-encode per resource); ``content`` decodes it for code that must look inside."""

    res_type: str
    res_id: str
    text: str

    @property
    def content(self) -> dict:
        return orjson.loads(self.text)

    @property
    def fragment(self) -> orjson.Fragment:
        """The text as orjson splices it into a document being dumped (not re-parsed)."""
        return orjson.Fragment(self.text)

    @property
    def ref(self) -> str:
        return f"{self.res_type}/{self.res_id}"


def instant(ts: datetime) -> str:
    """A FHIR ``instant`` (UTC, microseconds, ``Z``)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


def content_hash(resource: dict) -> str:
    """sha256 over the resource without the server-assigned ``meta.versionId/lastUpdated``.

    Two submissions that differ only in those (or in key order) hash the same, so an update that
    changes nothing creates no new version.
    """
    meta = resource.get("meta")
    if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        resource = {k: v for k, v in resource.items() if k != "meta"}
        if rest:
            resource["meta"] = rest
    return hashlib.sha256(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).hexdigest()


def stamp(resource: dict, res_id: str, version: int, ts: datetime) -> dict:
    """Return a copy of ``resource`` with the server-assigned id, versionId and lastUpdated."""
    out = dict(resource)
    out["id"] = res_id
    meta = dict(out.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(ts)
    # Keep FHIR's element order: resourceType, id, meta first.
    ordered = {"resourceType": out.pop("resourceType"), "id": out.pop("id"), "meta": meta}
    out.pop("meta", None)
    ordered.update(out)
    return ordered
