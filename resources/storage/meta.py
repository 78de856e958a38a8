"""``$meta``, ``$meta-add``, ``$meta-delete`` (FHIR R4 resource-operations.html): the profiles,
tags and security labels of a resource, or of all the resources of a type or of the server.

Tags and security labels are sets of Codings whose identity is system + code (version and
display are ignored when matching); profiles are a set of canonical URLs. The in-use lists of a
type or of the server come from the search index of ``_tag``, ``_security`` and ``_profile``
(the token and uri tables), through the caller's security filter: a caller learns only
the labels of resources it may read.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from resources.search import keys
from resources.search.tables import idx_token, idx_uri
from resources.search.visibility import Security, secured
from resources.storage.repository import Unit
from resources.storage.schema import resource
from resources.validation import resource_types

CODING_LISTS = ("tag", "security")


def _same(a: dict, b: dict) -> bool:
    return a.get("system") == b.get("system") and a.get("code") == b.get("code")


def added(meta: dict, extra: dict) -> dict:
    """``meta`` with the tags, security labels and profiles of ``extra`` added (as sets)."""
    out = dict(meta)
    for key in CODING_LISTS:
        have = list(out.get(key) or [])
        for coding in extra.get(key) or []:
            if not any(_same(coding, h) for h in have):
                have.append(coding)
        if have:
            out[key] = have
    profiles = list(out.get("profile") or [])
    for url in extra.get("profile") or []:
        if url not in profiles:
            profiles.append(url)
    if profiles:
        out["profile"] = profiles
    return out


def removed(meta: dict, gone: dict) -> dict:
    """``meta`` without the tags, security labels and profiles of ``gone``."""
    out = dict(meta)
    for key in CODING_LISTS:
        kept = [c for c in out.get(key) or [] if not any(_same(c, g) for g in gone.get(key) or [])]
        if kept:
            out[key] = kept
        else:
            out.pop(key, None)
    profiles = [p for p in out.get("profile") or [] if p not in (gone.get("profile") or [])]
    if profiles:
        out["profile"] = profiles
    else:
        out.pop("profile", None)
    return out


def in_use(unit: Unit, res_type: str | None, security: Security | None) -> dict:
    """The Meta of every tag, security label and profile used by a current resource of
    ``res_type`` (None: of any type) that ``security`` lets through."""
    types = [res_type] if res_type is not None else sorted(resource_types())
    visible = sa.select(resource.c.pk).where(resource.c.deleted.is_(False))
    if res_type is not None:
        visible = visible.where(resource.c.res_type == res_type)
    if security is not None:
        visible = visible.where(*secured(security, res_type))
    meta: dict = {}
    for key, param in (("tag", "_tag"), ("security", "_security")):
        stmt = (
            sa.select(idx_token.c.system, idx_token.c.value)
            .where(
                idx_token.c.hash_identity.in_(_idents(types, param)),
                idx_token.c.value.is_not(None),
                idx_token.c.res_pk.in_(visible),
            )
            .distinct()
        )
        codings = [
            {**({"system": system} if system else {}), "code": value}
            for system, value in sorted(unit.conn.execute(stmt).all(), key=_order)
        ]
        if codings:
            meta[key] = codings
    stmt = (
        sa.select(idx_uri.c.uri)
        .where(
            idx_uri.c.hash_identity.in_(_idents(types, "_profile")),
            idx_uri.c.res_pk.in_(visible),
        )
        .distinct()
    )
    profiles = sorted(unit.conn.execute(stmt).scalars())
    if profiles:
        meta["profile"] = profiles
    return meta


def _idents(types: Iterable[str], param: str) -> list[int]:
    return [keys.identity(t, param) for t in types]


def _order(row: tuple) -> tuple[str, str]:
    return (row[0] or "", row[1] or "")
