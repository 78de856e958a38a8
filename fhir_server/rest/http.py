"""FHIR over HTTP: body parsing, content negotiation, Prefer, and response rendering.

FHIR R4 http.html#mime-type (``application/fhir+json``, ``application/fhir+xml``, ``_format``,
``_pretty``), http.html#ops (``Prefer: return=``), http.html#concurrency (ETag, If-Match).
FHIR XML (xml.html) is read and written by ``mappings/fhir_xml.py``: an XML body is converted to
the same parsed JSON the interactions take, and a reply goes out as XML when ``_format`` or
``Accept`` asks for it (errors included). Anything else still gets 406 / 415.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from fastapi.responses import Response

from fhir_server.rest.context import JsonText
from mappings import fhir_xml
from resources.errors import Invalid, Issue, NotAcceptable, TooLarge, UnsupportedMediaType
from resources.validation import ResourceBody

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
JSON_TYPES = {"application/fhir+json", "application/json", "text/json", "application/json+fhir"}
XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir", "xml"}
FORMAT_JSON = {"json", "application/json", "application/fhir+json", "text/json"}
FORMAT_XML = {"xml", "text/xml", "application/xml", "application/fhir+xml"}


def _format_param(request: Request) -> str | None:
    fmt = request.query_params.get("_format")
    return format_value(fmt) if fmt else None


def format_value(fmt: str) -> str:
    """``_format`` as compared: lower case, and ``application/fhir xml`` read as
    ``application/fhir+xml`` (a ``+`` left unescaped in a URL arrives as a space)."""
    return fmt.strip().lower().replace(" ", "+")


def _accepted(accept: str) -> list[str]:
    """The media ranges of an ``Accept`` header, highest ``q`` first (stable), q=0 left out."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 1.0
        if kind and q > 0:
            ranked.append((-q, i, kind.lower()))
    return [kind for _, _, kind in sorted(ranked)]


def accepted(accept: str) -> list[str]:
    """The media ranges an ``Accept`` header admits, highest ``q`` first, lower case."""
    return _accepted(accept)


def negotiate(request: Request) -> str:
    """The response content type (FHIR JSON or FHIR XML); 406 when the client accepts only
    formats we do not write. ``_format`` wins over ``Accept`` (http.html#mime-type)."""
    return negotiate_format(_format_param(request), request.headers.get("accept", ""))


def negotiate_format(fmt: str | None, accept: str) -> str:
    """:func:`negotiate` over the ``_format`` parameter (lower case) and the ``Accept`` header."""
    if fmt is not None:
        base = fmt.split(";")[0].strip()
        if base in FORMAT_JSON:
            return FHIR_JSON
        if base in FORMAT_XML or base == "application/xml+fhir":
            return FHIR_XML
        raise NotAcceptable(f"_format={fmt} is not supported; this server writes FHIR JSON or XML")
    if not accept.strip():
        return FHIR_JSON
    for kind in _accepted(accept):
        if kind in JSON_TYPES or kind in ("*/*", "application/*", "text/*"):
            return FHIR_JSON
        if kind in XML_TYPES:
            return FHIR_XML
    return FHIR_JSON


def response_format(request: Request) -> str:
    """The format of a reply, errors included: what :func:`negotiate` picks on the FHIR API
    (``/fhir``), and FHIR JSON where it refuses (a 406 is itself written in JSON) and on the other
    edges (the authorization server, DICOMweb, the web app), whose errors stay JSON whatever a
    browser's ``Accept`` says."""
    path = request.url.path
    if path != "/fhir" and not path.startswith("/fhir/"):
        return FHIR_JSON
    try:
        return negotiate(request)
    except NotAcceptable:
        return FHIR_JSON


# A Binary's own content goes out with these: a stored HTML or SVG Binary asked for as itself
# must not run script with this origin's authority (R4 binary.html#security).
RAW_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


def binary_content(request: Request, body: dict | JsonText | None) -> Response | None:
    """A Binary read answered with its own content (R4 binary.html#rest, "Serving Binary
    Resources using the RESTful API"): when ``Accept`` names the Binary's ``contentType`` (not a
    FHIR format, e.g. ``application/pdf``) and no ``_format`` asks for FHIR, the decoded ``data``
    is the body, with that Content-Type; otherwise None (the FHIR resource as usual). A Binary
    without ``data`` has no content to send: the FHIR resource is returned."""
    if body is None or _format_param(request) is not None:
        return None
    accept = request.headers.get("accept", "")
    resource = orjson.loads(body.text) if isinstance(body, JsonText) else body
    content_type = str(resource.get("contentType", ""))
    base = content_type.split(";")[0].strip().lower()
    if not base or base in JSON_TYPES or base in XML_TYPES or "data" not in resource:
        return None
    if base not in _accepted(accept):
        return None
    try:
        data = base64.b64decode(resource["data"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return Response(
        content=data,
        media_type=content_type,
        headers={"Cache-Control": "no-store", **RAW_HEADERS},
    )


def _dump(body: Any, pretty: bool) -> bytes:
    if isinstance(body, JsonText):  # stored JSON text: as it is, or parsed to indent it
        if not pretty:
            return body.text.encode()
        body = orjson.loads(body.text)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)


def fhir_response(
    request: Request,
    body: dict | JsonText | None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    pretty = request.query_params.get("_pretty", "").lower() == "true"
    # Health records: no browser or proxy may keep a copy, and none may answer a read from its
    # cache (a heuristic freshness from Last-Modified would show a Task's previous status).
    # Conditional reads (If-None-Match → 304) still work: clients send the ETag themselves.
    headers = {"Cache-Control": "no-store", **(headers or {})}
    if body is None:
        return Response(status_code=status, headers=headers)
    # A 406 is written in JSON: the client asked for a format this reply will not have.
    if status != 406 and response_format(request) == FHIR_XML:
        # the stored JSON text of a read is parsed only when XML is asked for
        resource = orjson.loads(body.text) if isinstance(body, JsonText) else body
        if _is_resource(resource):
            try:
                content = to_xml(resource, pretty)
            except fhir_xml.XmlError as exc:
                # Stored content XML cannot carry (a narrative that is not well-formed XHTML,
                # which JSON writes do not check): 406, the reply is there in JSON.
                refusal = NotAcceptable(
                    f"this reply cannot be written as FHIR XML ({exc}); ask for "
                    "application/fhir+json"
                )
                return Response(
                    content=_dump(refusal.outcome(), pretty),
                    status_code=406,
                    media_type=f"{FHIR_JSON}; charset=utf-8",
                    headers={"Cache-Control": "no-store"},
                )
            return Response(
                content=content,
                status_code=status,
                media_type=f"{FHIR_XML}; charset=utf-8",
                headers=headers,
            )
    return Response(
        content=_dump(body, pretty),
        status_code=status,
        media_type=f"{FHIR_JSON}; charset=utf-8",
        headers=headers,
    )


def _is_resource(body: Any) -> bool:
    """A FHIR resource (written as XML when asked); other JSON replies (a Bulk Data manifest)
    stay JSON whatever the client asks."""
    return isinstance(body, dict) and body.get("resourceType") in fhir_xml.resource_types()


def to_xml(body: dict, pretty: bool = False) -> bytes:
    """A reply resource as FHIR XML. Search Bundles may carry stored resources as their JSON
    text (``orjson.Fragment``): one dump and load makes them plain values first."""
    plain = orjson.loads(orjson.dumps(body))
    return fhir_xml.to_xml(plain, pretty=pretty)


async def read_body(
    request: Request, limit: int, *, patch: bool = False, optional: bool = False
) -> Any:
    """Read and parse a JSON request body within ``limit`` bytes; 400/413/415 otherwise."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = JSON_TYPES | XML_TYPES | ({"application/json-patch+json"} if patch else set())
    if ctype and ctype not in allowed and not (optional and declared in (None, "0")):
        raise UnsupportedMediaType(
            f"Content-Type {ctype} is not supported; send application/fhir+json "
            "or application/fhir+xml"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if optional:
            return None
        raise Invalid("the request has no body; a FHIR resource was expected")
    if ctype in XML_TYPES:
        parsed = parse_xml(raw)
        check_depth(parsed)
        return parsed
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from exc
    check_depth(parsed)
    return parsed


def parse_xml(raw: bytes) -> dict:
    """A FHIR XML body as the parsed JSON resource; 400 ``structure`` with where it went wrong
    (not well-formed, a DOCTYPE, an element the type does not have, a bad value)."""
    try:
        return fhir_xml.from_xml(raw)
    except fhir_xml.XmlError as exc:
        where = (exc.location,) if exc.location else ()
        detail = f"the body is not valid FHIR XML: {exc}"
        raise Invalid(detail, [Issue("structure", detail, expression=where)]) from exc


# The deepest JSON a request body may nest (objects and arrays). The deepest R4 resources in
# practice (nested Questionnaire items, extensions of extensions) stay far below it; deeper
# bodies would break the serialiser (orjson stops at 254 levels, and a stored resource is
# rendered inside a Bundle) and the recursive validators.
MAX_JSON_DEPTH = 100


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """400 ``structure`` when ``value`` nests deeper than ``limit``; an iterative walk."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise Invalid(
                f"the body nests JSON objects and arrays more than {limit} levels deep",
                [Issue("structure", f"the JSON nests more than {limit} levels deep")],
            )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def reject_nul(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """400 for a parameter whose name or value holds a NUL character (``%00``): no FHIR value
    may contain one (R4 datatypes.html#string) and PostgreSQL text cannot hold one."""
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise Invalid(f"parameter {name!r}: a NUL character (%00) is not allowed")
    return pairs


def query_pairs(request: Request) -> list[tuple[str, str]]:
    """The URL's query parameters, in order, NUL-free."""
    return reject_nul(list(request.query_params.multi_items()))


async def read_form(request: Request, limit: int) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body (``POST [type]/_search``) as pairs."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "_search takes application/x-www-form-urlencoded parameters, not " + ctype
        )
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise TooLarge(f"the request body exceeds the limit of {limit} bytes")
    return reject_nul(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def read_resource_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object (a FHIR resource)")
    if not isinstance(body.get("resourceType"), str):
        raise Invalid("the body has no resourceType", expression=["resourceType"])
    return body


def resource_of_type(body: Any, res_type: str) -> ResourceBody:
    """The body of a type-level write (``POST [base]/[type]``) as a :class:`ResourceBody`: a JSON
    object whose ``resourceType`` is the URL's type (which the router has checked is an R4
    type). The one resourceType check of the request; what is below takes the type from it."""
    found = read_resource_body(body)
    if found["resourceType"] != res_type:
        raise Invalid(
            f"resourceType {found['resourceType']!r} does not match the URL type {res_type}",
            expression=["resourceType"],
        )
    return ResourceBody(res_type, found)


def prefer(request: Request) -> dict[str, str]:
    """Parse ``Prefer`` (RFC 7240) into a dict: return=..., handling=..., respond-async."""
    out: dict[str, str] = {}
    for part in request.headers.get("prefer", "").split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        out[key.strip().lower()] = value.strip().strip('"').lower()
    return out


class Versioned(Protocol):
    """A stored version as the version headers need it (``Stored``, ``CurrentJSON``)."""

    @property
    def etag(self) -> str: ...

    @property
    def last_updated(self) -> datetime: ...


def http_date(stored: Versioned) -> str:
    return format_datetime(stored.last_updated, usegmt=True)


def version_headers(stored: Versioned) -> dict[str, str]:
    return {"ETag": stored.etag, "Last-Modified": http_date(stored)}
