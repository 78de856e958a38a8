"""``$everything`` (FHIR R4 patient-operation-everything.html, encounter-operation-everything.html):
every resource of one or more compartments, a page at a time, and the resources they refer to.

A page holds the compartment's members (``search.mode = match``) in primary-key order from the
``_page`` cursor (keyset paging: rows written while a client pages never shift a page), and the
resources those members refer to that are not members themselves (``search.mode = include``:
the Practitioner, Organization, Medication... of the record). Everything passes the caller's
``Security`` filter (``resources/search/visibility.py``): a patient-context token sees only what a
search of its own compartment would show, whichever compartment it asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import sqlalchemy as sa

from resources.errors import Invalid, Issue
from resources.search import keys
from resources.search.compartments import all_compartment_params
from resources.search.engine import _decode, _encode, _includes
from resources.search.parse import Include
from resources.search.tables import idx_reference
from resources.search.visibility import Security, compartment_members, secured
from resources.storage.bundles import searchset_bundle
from resources.storage.repository import Unit
from resources.storage.schema import resource
from resources.storage.store import StoredJSON


@dataclass(frozen=True)
class EverythingRequest:
    """One page of ``$everything``.

    ``comp_ids``: the compartments (``Patient/[id]/$everything``: one id); None for every
    compartment of ``comp_type`` (``Patient/$everything``). ``types``: ``_type`` (None: all);
    ``since``: ``_since`` (resources last updated at or after it); ``count``: the page size;
    ``cursor``: the ``_page`` value of a next link; ``path`` and ``query``: the request as
    asked, for the links."""

    comp_type: str
    comp_ids: tuple[str, ...] | None
    count: int
    path: str
    query: tuple[tuple[str, str], ...] = ()
    types: frozenset[str] | None = None
    since: datetime | None = None
    cursor: str | None = None
    security: Security | None = None
    notes: tuple[Issue, ...] = ()  # warnings for the Bundle's outcome entry (ignored inputs)


def _members(comp_type: str, comp_ids: tuple[str, ...] | None) -> sa.ColumnElement:
    if comp_ids is not None:
        return sa.or_(*(compartment_members(comp_type, i) for i in comp_ids))
    idents = [keys.identity(rt, p) for rt, p in all_compartment_params(comp_type)]
    referring = sa.select(idx_reference.c.res_pk).where(
        idx_reference.c.hash_identity.in_(idents), idx_reference.c.target_type == comp_type
    )
    return sa.or_(resource.c.res_type == comp_type, resource.c.pk.in_(referring))


def _filters(req: EverythingRequest) -> list[sa.ColumnElement]:
    # The audit log is not part of the record (its AuditEvents are resource rows since they are
    # searched by the search engine, and refer to the patients they are about).
    conds: list[sa.ColumnElement] = [
        resource.c.deleted.is_(False),
        resource.c.res_type != "AuditEvent",
    ]
    if req.types is not None:
        conds.append(resource.c.res_type.in_(sorted(req.types)))
    if req.since is not None:
        conds.append(resource.c.last_updated >= req.since)
    if req.security is not None:
        conds += secured(req.security)
    return conds


def everything(unit: Unit, req: EverythingRequest, *, base: str) -> dict:
    """The searchset Bundle of one page of ``req``."""
    if req.count < 0:
        raise Invalid("_count must not be negative")
    where = [_members(req.comp_type, req.comp_ids), *_filters(req)]
    total = None
    if req.comp_ids is not None:  # one record: counting it is cheap, every record is not
        counted = sa.select(sa.func.count()).select_from(resource).where(*where)
        total = unit.conn.execute(counted).scalar_one()
    page: list[StoredJSON] = []
    next_url = None
    if req.count > 0:
        stmt = sa.select(resource.c.pk).where(*where)
        if req.cursor:
            stmt = stmt.where(resource.c.pk > _decode(req.cursor, 0)[1])
        pks = list(unit.conn.execute(stmt.order_by(resource.c.pk).limit(req.count + 1)).scalars())
        page = unit.read_json(pks=pks[: req.count])
        if len(pks) > req.count:
            kept = [(k, v) for k, v in req.query if k != "_page"]
            cursor = _encode([], pks[req.count - 1])
            next_url = f"{base}/{req.path}?{urlencode([*kept, ('_page', cursor)])}"
    # The resources the page refers to, as far as the caller may read them (and of the types
    # asked for): R4 says $everything SHOULD return them ("and any resource referenced from
    # those"). Members already sent on another page may come again as includes.
    included, found_issues = _includes(unit, page, [Include("*", "*")], [], req.security)
    issues = [*req.notes, *found_issues]
    included = [s for s in included if s.res_type != "AuditEvent"]
    if req.types is not None:
        included = [s for s in included if s.res_type in req.types]
    self_url = f"{base}/{req.path}" + (f"?{urlencode(req.query)}" if req.query else "")
    outcome = (
        {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}
        if issues
        else None
    )
    return searchset_bundle(
        base,
        page,
        includes=included,
        self_url=self_url,
        next_url=next_url,
        total=total,
        outcome=outcome,
    )
