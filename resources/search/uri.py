"""uri parameters (FHIR R4 search.html#uri).

Index: uri, url, canonical, oid, uuid values as given (up to 512 characters).

Search: exact match by default; ``:below`` matches stored URIs that start with the value
(``http://acme.org/fhir/`` finds everything under it); ``:above`` matches stored URIs of which
the value is a descendant (the value itself and each of its ``/``-prefixes).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from resources.search.clauses import PkSet, Target, identity_in, pk_in, starts_with
from resources.search.extract import Value
from resources.search.parse import unescape
from resources.search.tables import URI_LEN, idx_uri

MODIFIERS = frozenset({"above", "below", "missing"})


def index(ident: int, values: list[Value], out: list) -> None:
    for _typ, value in values:
        if isinstance(value, str) and value:
            out.append((idx_uri, (ident, value[:URI_LEN])))


def ancestors(uri: str) -> list[str]:
    """``http://a.org/fhir/ValueSet/1`` → itself, ``http://a.org/fhir/ValueSet``,
    ``http://a.org/fhir``, ``http://a.org`` (never cutting into ``scheme://``)."""
    out = [uri]
    head = uri.find("://")
    floor = head + 3 if head >= 0 else 0
    cut = uri.rstrip("/")
    while True:
        i = cut.rfind("/")
        if i < floor or i <= 0:
            break
        cut = cut[:i]
        out.append(cut)
    return out


def clause(target: Target, modifier: str | None, values: Sequence[str]) -> PkSet:
    col = idx_uri.c.uri
    texts = [unescape(v)[:URI_LEN] for v in values]
    if modifier == "below":
        cond = sa.or_(*(starts_with(col, t) for t in texts))
    elif modifier == "above":
        cond = col.in_(sorted({a for t in texts for a in ancestors(t)}))
    else:
        cond = col == texts[0] if len(texts) == 1 else col.in_(texts)
    return pk_in(idx_uri, identity_in(idx_uri, target.idents), cond)
