"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A transaction runs every entry in one database transaction, in the spec's order (DELETE, POST,
PUT/PATCH, GET), after giving each new resource its id and rewriting the references that point
at ``fullUrl``s (``urn:uuid:...`` or absolute) and conditional references (``Type?criteria``).
Any failure rolls the whole transaction back and names the entry that failed. A batch runs each
entry on its own and reports each outcome in its entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from resources.errors import (
    FhirError,
    Invalid,
    Issue,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
)
from resources.search.criteria import parse_criteria
from resources.storage.bundles import status_line
from resources.storage.db import unavailable
from resources.storage.patch import apply_fhirpath_patch, apply_json_patch
from resources.storage.repository import BatchItemError, Repository, Unit, WriteResult, new_id
from resources.storage.store import ID_RE, Stored, instant
from resources.validation import ResourceBody, is_resource_type

log = logging.getLogger("hearth.transaction")

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
WRITE_STATUS = {"created": 201, "updated": 200, "unchanged": 200, "exists": 200}

# Search inside a bundle: (unit, type, criteria, base) -> searchset Bundle.
SearchFn = Callable[[Unit, str, list[tuple[str, str]], str], dict]
# How an error becomes an HTTP status (owned by the HTTP edge).
StatusFn = Callable[[FhirError], int]


@dataclass
class Entry:
    index: int
    method: str
    res_type: str
    res_id: str | None
    vid: str | None
    query: list[tuple[str, str]]
    full_url: str | None
    resource: dict | list | None
    if_none_exist: list[tuple[str, str]] | None
    if_match: str | None
    if_none_match: str | None = None  # request.ifNoneMatch (a PUT's create-only / not-version)
    assigned_id: str | None = None
    existing: Stored | None = None  # conditional create that matched
    response: dict = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)  # Type/id a DELETE removed
    conditional_created: list[tuple[str, str]] | None = None  # a conditional PUT's criteria
    # (res_id, query, resource) as parsed: a unit retried after a collision starts from them
    # again (the first attempt resolved conditional URLs and rewrote references in place)
    parsed: tuple | None = None


def _parse_url(url: str, index: int) -> tuple[str, str | None, str | None, list]:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket ("http://[")
        raise Invalid(f"entry {index}: {url!r} is not a URL", expression=_expr(index)) from None
    path = parts.path.strip("/")
    query = parse_qsl(parts.query, keep_blank_values=True)
    segs = [s for s in path.split("/") if s]
    # Accept absolute URLs by keeping the part from the resource type on.
    for i, seg in enumerate(segs):
        if is_resource_type(seg):
            segs = segs[i:]
            break
    if not segs or not is_resource_type(segs[0]):
        raise Invalid(f"entry {index}: {url!r} names no resource type", expression=_expr(index))
    res_type = segs[0]
    res_id = segs[1] if len(segs) > 1 else None
    vid = segs[3] if len(segs) > 3 and segs[2] == "_history" else None
    if res_id is not None and not res_id.startswith("$") and not ID_RE.match(res_id):
        raise Invalid(f"entry {index}: {res_id!r} is not a valid id", expression=_expr(index))
    return res_type, res_id, vid, query


def _text(value: object, index: int, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise Invalid(
        f"entry {index}: request.{name} must be a string",
        expression=[f"Bundle.entry[{index}].request.{name}"],
    )


def _expr(index: int) -> list[str]:
    return [f"Bundle.entry[{index}]"]


def entry_list(bundle: dict) -> list:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise Invalid("Bundle.entry must be an array", expression=["Bundle.entry"])
    return entries


def parse_entries(bundle: dict) -> list[Entry]:
    return [parse_entry(i, raw) for i, raw in enumerate(entry_list(bundle))]


def parse_entry(i: int, raw: object) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise Invalid(f"entry {i} has no request", expression=[f"Bundle.entry[{i}].request"])
    req = raw["request"]
    method = str(req.get("method", "")).upper()
    if method not in ORDER:
        raise Invalid(
            f"entry {i}: request.method {req.get('method')!r} is not one of "
            "GET, HEAD, POST, PUT, PATCH, DELETE",
            expression=[f"Bundle.entry[{i}].request.method"],
        )
    url = req.get("url")
    if not isinstance(url, str) or not url:
        raise Invalid(
            f"entry {i} has no request.url", expression=[f"Bundle.entry[{i}].request.url"]
        )
    res_type, res_id, vid, query = _parse_url(url, i)
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise Invalid(
            f"entry {i}: {method} needs a resource", expression=[f"Bundle.entry[{i}].resource"]
        )
    ine = req.get("ifNoneExist")
    return Entry(
        index=i,
        method=method,
        res_type=res_type,
        res_id=res_id,
        vid=vid,
        query=query,
        full_url=raw.get("fullUrl"),
        resource=resource,
        if_none_exist=parse_criteria(ine) if ine else None,
        if_match=req.get("ifMatch"),
        if_none_match=_text(req.get("ifNoneMatch"), i, "ifNoneMatch"),
    )


@dataclass(frozen=True)
class ParsedBundle:
    """A batch or transaction Bundle parsed once (:func:`parse_bundle`): what the authorization
    checks entry by entry and what :func:`process` runs, the same :class:`Entry` values.

    ``entries``: a transaction's entries (one that does not parse fails the whole Bundle, so none
    is here); a batch's, where an entry that does not parse is its ``Invalid``, answered in its
    own response entry (as is any other failure to parse it: http.html#brules)."""

    body: dict
    kind: object  # Bundle.type as sent; process() answers one that is not batch or transaction
    entries: list[Entry | Exception]

    def parsed(self) -> list[Entry]:
        """The entries that parsed (all of a transaction's)."""
        return [e for e in self.entries if isinstance(e, Entry)]


def parse_bundle(body: object) -> ParsedBundle | None:
    """Parse a Bundle's entries once; None when ``body`` is not a Bundle (the transaction
    interaction says so). ``Invalid`` for a malformed ``entry`` array, and for a transaction
    (any type but batch) an entry that does not parse."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return None
    kind = body.get("type")
    entries: list[Entry | Exception] = []
    if kind != "batch":
        entries.extend(parse_entries(body))
    else:
        for i, raw in enumerate(entry_list(body)):
            try:
                entries.append(parse_entry(i, raw))
            except Exception as exc:  # noqa: BLE001 - the entry's own response (_batch_entry)
                entries.append(exc)
    return ParsedBundle(body, kind, entries)


def process(
    repo: Repository,
    bundle: dict | ParsedBundle,
    *,
    base: str,
    search: SearchFn,
    status_of: StatusFn,
    return_pref: str = "representation",
) -> dict:
    """Process a batch or transaction Bundle (as parsed by :func:`parse_bundle`, or as sent);
    returns the response Bundle."""
    if isinstance(bundle, dict):
        if bundle.get("resourceType") != "Bundle":
            raise Invalid("a batch or transaction must be a Bundle", expression=["resourceType"])
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise Invalid(
                f"Bundle.type must be batch or transaction, not {kind!r}",
                expression=["Bundle.type"],
            )
        parsed = parse_bundle(bundle)
        assert parsed is not None
        bundle = parsed
    kind = bundle.kind
    if kind not in ("batch", "transaction"):
        raise Invalid(
            f"Bundle.type must be batch or transaction, not {kind!r}", expression=["Bundle.type"]
        )
    if kind == "transaction":
        entries = bundle.parsed()
        _check_unique_full_urls(entries)
        repo.run(lambda unit: _transaction(unit, entries, base, search, return_pref))
        responses = [e.response for e in entries]
    else:
        responses = [
            _batch_entry(repo, i, entry, base, search, status_of, return_pref)
            for i, entry in enumerate(bundle.entries)
        ]
    return {"resourceType": "Bundle", "type": f"{kind}-response", "entry": responses}


def _batch_entry(
    repo: Repository,
    index: int,
    parsed: Entry | Exception,
    base: str,
    search: SearchFn,
    status_of: StatusFn,
    return_pref: str,
) -> dict:
    """One batch entry on its own (http.html#brules): whatever it does wrong, even a fault, is
    its own response; only an unavailable database fails the whole batch (503)."""
    try:
        if isinstance(parsed, Exception):
            raise parsed
        entry = parsed
        repo.run(lambda unit: _execute(unit, entry, {}, base, search, return_pref))
        return entry.response
    except FhirError as exc:
        return {"response": {"status": status_line(status_of(exc)), "outcome": exc.outcome()}}
    except Exception as exc:
        if unavailable(exc):
            raise
        log.error("batch entry %d failed", index, exc_info=exc)
        fault = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "exception",
                    "diagnostics": "internal server error; the fault was logged",
                }
            ],
        }
        return {"response": {"status": status_line(500), "outcome": fault}}


def _check_unique_full_urls(entries: list[Entry]) -> None:
    seen: set[str] = set()
    for e in entries:
        if e.full_url and e.method in ("POST", "PUT"):
            if e.full_url in seen:
                raise Invalid(
                    f"entry {e.index}: fullUrl {e.full_url} appears twice in the transaction",
                    expression=[f"Bundle.entry[{e.index}].fullUrl"],
                )
            seen.add(e.full_url)


def _transaction(
    unit: Unit, entries: list[Entry], base: str, search: SearchFn, return_pref: str
) -> None:
    for e in entries:
        if e.parsed is None:
            e.parsed = (e.res_id, list(e.query), e.resource)
        else:  # ``_rewrite`` builds new resources: the parsed one is untouched
            e.res_id, query, e.resource = e.parsed
            e.query = list(query)
        e.conditional_created = None
        e.assigned_id = None
        e.existing = None
        e.response = {}
        e.deleted = []
    refs: dict[str, str] = {}
    ordered = sorted(entries, key=lambda e: ORDER[e.method])
    current: Entry | None = None  # the entry being worked on, named if anything fails
    try:
        for current in ordered:
            if current.method == "DELETE":
                _execute(unit, current, refs, base, search, return_pref)
        # Give every new resource its identity before anything is written.
        for current in entries:
            _assign_identity(unit, current, refs)
        current = None
        _check_touched_once(entries)
        for current in ordered:
            if current.method in ("POST", "PUT", "PATCH") and isinstance(
                current.resource, dict | list
            ):
                current.resource = _rewrite(current.resource, refs, unit)
        current = None
        # Plain creates go through the batch write path together.
        plain = [
            e for e in ordered if e.method == "POST" and e.existing is None and not e.if_none_exist
        ]
        for e in plain:
            current = e
            _check_post(e)
        current = None
        try:
            results = unit.create_many([(_assigned(e), _posted(e)) for e in plain])
        except BatchItemError as exc:
            current = plain[exc.index]
            raise exc.error from exc
        for e, result in zip(plain, results, strict=True):
            e.response = _write_response(result, base, return_pref)
        batched = {id(e) for e in plain}
        for current in ordered:
            if current.method != "DELETE" and id(current) not in batched:
                _execute(unit, current, refs, base, search, return_pref)
        current = None
        _check_conditional_creates(unit, entries)
    except FhirError as exc:
        where = (
            f"entry {current.index} ({current.method} {current.res_type or ''})"
            if current
            else "bundle"
        )
        issues = [
            Issue(
                i.code,
                f"{where}: {i.diagnostics}",
                i.severity,
                i.expression or tuple(_expr(current.index) if current else ()),
            )
            for i in exc.issues
        ]
        raise type(exc)(f"transaction failed at {where}: {exc.diagnostics}", issues) from exc


def _assign_identity(unit: Unit, e: Entry, refs: dict[str, str]) -> None:
    """The id an entry's resource will have: new for a create, the match's for a conditional
    create or update that matches, and map its fullUrl to it."""
    if e.method == "POST":
        if e.if_none_exist:
            found = unit.match_visible(e.res_type, e.if_none_exist, limit=2)
            if len(found) > 1:
                raise MultipleMatches(f"ifNoneExist matches {len(found)} {e.res_type} resources")
            if found:
                e.existing = unit.read_many(found)[0]
        e.assigned_id = e.existing.res_id if e.existing else new_id()
        _map(refs, e, f"{e.res_type}/{e.assigned_id}")
    elif e.method == "PUT":
        if e.res_id is None:
            found = unit.match_visible(e.res_type, e.query, limit=2)
            if len(found) > 1:
                raise MultipleMatches(f"the criteria match {len(found)} {e.res_type} resources")
            e.assigned_id = unit.read_many(found)[0].res_id if found else new_id()
            e.conditional_created = None if found else e.query
            e.query = []
            e.res_id = e.assigned_id
        _map(refs, e, f"{e.res_type}/{e.res_id}")
    elif e.method == "PATCH" and e.res_id is None and e.query:
        # Conditional patch (http.html#patch): the criteria must match exactly one resource.
        found = unit.match_visible(e.res_type, e.query, limit=2)
        if not found:
            raise NotFound(f"the criteria match no {e.res_type} resource to patch")
        if len(found) > 1:
            raise MultipleMatches(f"the criteria match {len(found)} {e.res_type} resources")
        e.res_id = unit.read_many(found)[0].res_id
        e.query = []
        _map(refs, e, f"{e.res_type}/{e.res_id}")


def _check_touched_once(entries: list[Entry]) -> None:
    """R4 http.html#trules: a transaction fails when the identities its DELETE, POST and
    PUT/PATCH entries resolve to overlap, conditional ones included. Two conditional writes with
    the same criteria that match nothing yet would each create a resource that the other's
    criteria select, so they count as touching the same resource too."""
    seen: dict[object, Entry] = {}

    def touch(key: object, what: str, e: Entry) -> None:
        first = seen.setdefault(key, e)
        if first is not e:
            raise Invalid(
                f"entries {first.index} and {e.index} both touch {what}; a transaction may "
                "touch each resource only once (http.html#trules)",
                expression=[*_expr(first.index), *_expr(e.index)],
            )

    for e in entries:
        if e.method == "DELETE":
            for ref in e.deleted:
                touch(ref, ref, e)
            continue
        if e.method not in ("POST", "PUT", "PATCH"):
            continue
        if e.method == "POST" and e.existing is None:
            criteria = e.if_none_exist
        elif e.method == "PUT" and e.conditional_created:
            criteria = e.conditional_created
        else:
            criteria = None
        if criteria:
            shown = "&".join(f"{k}={v}" for k, v in criteria)
            touch((e.res_type, tuple(sorted(criteria))), f"{e.res_type}?{shown}", e)
        res_id = e.assigned_id if e.method == "POST" else e.res_id
        if res_id is not None:
            touch(f"{e.res_type}/{res_id}", f"{e.res_type}/{res_id}", e)


def _check_conditional_creates(unit: Unit, entries: list[Entry]) -> None:
    """A conditional create (or conditional update that created) matched nothing before the
    transaction wrote; if its criteria now select another resource this transaction wrote, the
    two entries would have been one resource: fail rather than store a duplicate that every later
    conditional write on those criteria refuses (412)."""
    written = {
        f"{e.res_type}/{e.assigned_id if e.method == 'POST' else e.res_id}": e
        for e in entries
        if e.method in ("POST", "PUT", "PATCH")
    }
    for e in entries:
        if e.method == "POST" and e.existing is None and e.if_none_exist:
            criteria, own = e.if_none_exist, e.assigned_id
        elif e.method == "PUT" and e.conditional_created:
            criteria, own = e.conditional_created, e.res_id
        else:
            continue
        found = unit.read_many(unit.match(e.res_type, criteria, limit=3))
        others = [written[s.ref] for s in found if s.res_id != own and s.ref in written]
        if others:
            first = min(others[0], e, key=lambda x: x.index)
            second = e if first is others[0] else others[0]
            raise Invalid(
                f"entries {first.index} and {second.index} both write the {e.res_type} that "
                f"entry {e.index}'s criteria select; a transaction may touch each resource only "
                "once (http.html#trules)",
                expression=[*_expr(first.index), *_expr(second.index)],
            )


def _check_post(e: Entry) -> None:
    if e.res_id is not None:
        raise Invalid(f"entry {e.index}: POST is for a type URL, not {e.res_type}/{e.res_id}")
    if _body(e).get("resourceType") != e.res_type:
        raise Invalid(f"entry {e.index}: resourceType does not match the URL type {e.res_type}")


def _posted(e: Entry) -> ResourceBody:
    """What a POST entry creates, its type settled by ``_check_post`` (the body's
    ``resourceType`` is the URL's R4 type) and without the id the server replaces."""
    return ResourceBody(e.res_type, {k: v for k, v in _body(e).items() if k != "id"})


def _body(e: Entry) -> dict:
    """The resource a POST or PUT entry writes (``parse_entry`` requires one)."""
    if not isinstance(e.resource, dict):
        raise Invalid(f"entry {e.index}: {e.method} needs a resource", expression=_expr(e.index))
    return e.resource


def _assigned(e: Entry) -> str:
    """The id ``_assign_identity`` gave a POST entry's new resource."""
    if e.assigned_id is None:
        raise AssertionError(f"entry {e.index}: no id was assigned before the write")
    return e.assigned_id


def _map(refs: dict[str, str], e: Entry, target: str) -> None:
    if e.full_url:
        refs[e.full_url] = target


def _rewrite(value, refs: dict[str, str], unit: Unit):  # type: ignore[no-untyped-def]
    """Replace fullUrl references and resolve conditional references, anywhere in a resource."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str) and "?" in v and v not in refs:
                out[k] = _resolve_conditional(v, unit)
            elif k == "div" and isinstance(v, str):
                out[k] = _rewrite_div(v, refs)
            else:
                out[k] = _rewrite(v, refs, unit)
        return out
    if isinstance(value, list):
        return [_rewrite(v, refs, unit) for v in value]
    if isinstance(value, str) and value in refs:
        return refs[value]
    return value


def _rewrite_div(div: str, refs: dict[str, str]) -> str:
    """Replace ``"fullUrl"`` (in quotes: an attribute value) in narrative XHTML. A quoted
    fullUrl without quotes in it is one of the pieces between two quotes, so only those pieces
    are looked up, not every fullUrl of the Bundle in turn."""
    if '"' not in div:
        return div
    pieces = div.split('"')
    found = [p for p in pieces[1:-1] if p in refs]
    found += [old for old in refs if '"' in old and old in div]
    for old in dict.fromkeys(found):
        div = div.replace(f'"{old}"', f'"{refs[old]}"')
    return div


def _resolve_conditional(reference: str, unit: Unit) -> str:
    res_type, _, query = reference.partition("?")
    if not is_resource_type(res_type):
        raise Invalid(f"conditional reference {reference!r} names no resource type")
    found = unit.match_visible(res_type, parse_qsl(query, keep_blank_values=True), limit=2)
    if len(found) != 1:
        raise PreconditionFailed(
            f"conditional reference {reference!r} matches {len(found)} resources; it must match one"
        )
    return unit.read_many(found)[0].ref


def _execute(
    unit: Unit, e: Entry, refs: dict[str, str], base: str, search: SearchFn, return_pref: str
) -> None:
    if e.method == "DELETE":
        if e.res_id:
            done = unit.delete(e.res_type, e.res_id, if_match=e.if_match, client=True)
            e.deleted = [f"{e.res_type}/{e.res_id}"]
        else:
            deleted = unit.conditional_delete(e.res_type, e.query)
            done = deleted[0] if deleted else None
            e.deleted = [d.stored.ref for d in deleted]
        e.response = {"response": {"status": status_line(204 if done is None else 200)}}
        if done is not None:
            e.response["response"]["etag"] = done.stored.etag
        return
    if e.method == "POST":
        _check_post(e)
        if e.existing is not None:
            result = WriteResult(e.existing, "exists")
        else:
            result = unit.create(_posted(e), if_none_exist=e.if_none_exist, res_id=e.assigned_id)
        e.response = _write_response(result, base, return_pref)
        return
    if e.method == "PUT":
        if e.res_id is None:
            result = unit.conditional_update(
                e.res_type, e.query, _body(e), if_match=e.if_match, if_none_match=e.if_none_match
            )
        else:
            body = _body(e)
            body = body if "id" in body else {**body, "id": e.res_id}
            # ``client``: the id is the one the entry's URL names (not one a conditional PUT
            # resolved or assigned), so a patient-context update-as-create answers 404
            result = unit.update(
                e.res_type,
                e.res_id,
                body,
                if_match=e.if_match,
                if_none_match=e.if_none_match,
                client=e.assigned_id is None,
            )
            if e.conditional_created and result.status == "created":
                # claimed like a conditional create: two transactions creating the same new
                # resource at once collide here, and the loser's retry finds the winner's
                unit.claim(e.res_type, e.conditional_created, result.stored)
        e.response = _write_response(result, base, return_pref)
        return
    if e.method == "PATCH":
        patch_doc = e.resource
        if isinstance(patch_doc, dict) and patch_doc.get("resourceType") == "Binary":
            raise Invalid(f"entry {e.index}: Binary-wrapped JSON Patch is not supported yet")
        if isinstance(patch_doc, list):
            apply = lambda cur: apply_json_patch(cur, patch_doc)  # noqa: E731
        else:
            apply = lambda cur: apply_fhirpath_patch(cur, patch_doc)  # noqa: E731
        if e.res_id is None:
            raise Invalid(f"entry {e.index}: PATCH needs a resource id or criteria in its URL")
        result = unit.patch(e.res_type, e.res_id, apply, if_match=e.if_match, client=True)
        e.response = _write_response(result, base, return_pref)
        return
    # GET / HEAD
    if e.res_id is None:
        bundle = search(unit, e.res_type, e.query, base)
        e.response = {"resource": bundle, "response": {"status": status_line(200)}}
        return
    if e.res_id.startswith("$"):
        raise NotFound(f"entry {e.index}: operations are not supported inside bundles yet")
    stored = unit.vread(e.res_type, e.res_id, e.vid) if e.vid else unit.read(e.res_type, e.res_id)
    e.response = {
        "resource": stored.content,
        "response": {
            "status": status_line(200),
            "etag": stored.etag,
            "lastModified": instant(stored.last_updated),
        },
    }


def _write_response(result: WriteResult, base: str, return_pref: str) -> dict:
    s = result.stored
    code = WRITE_STATUS[result.status]
    response: dict = {
        "status": status_line(code),
        "etag": s.etag,
        "lastModified": instant(s.last_updated),
    }
    if code == 201:
        response["location"] = f"{s.versioned_ref}"
    out: dict = {"fullUrl": f"{base}/{s.ref}"}
    if return_pref == "representation":
        out["resource"] = s.content
    out["response"] = response
    return out
