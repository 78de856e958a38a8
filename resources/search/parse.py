"""Parsing a search request's query (FHIR R4 search.html): parameter names with modifiers, chains
and reverse chains, values with ``,`` (OR) and the ``\\`` escapes, prefixes, and the
result-shaping parameters (``_count``, ``_sort``, ``_include`` ...), which are not criteria.

Repeating a parameter ANDs its values; a comma inside one value ORs them (search.html#combining).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from resources.errors import Invalid
from resources.storage.bounds import INT4_MAX, clamp_whole, is_whole

# Parameters that shape the result rather than select resources (search.html#return).
RESULT_PARAMS = frozenset(
    {
        "_count", "_sort", "_include", "_revinclude", "_total", "_summary", "_elements",
        "_contained", "_containedType", "_format", "_pretty",
    }
)  # fmt: skip

# Parameters that control how a search runs, neither what it finds nor what it returns: the
# keyset paging cursor, and ``_explain=true`` (the SQL and its plan, for operators).
CONTROL_PARAMS = frozenset({"_page", "_explain"})

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True)
class Link:
    """One link of a chain: ``subject:Patient`` is code ``subject``, modifier ``Patient``."""

    code: str
    modifier: str | None = None


@dataclass(frozen=True)
class HasLink:
    """``_has:Observation:patient:`` — resources of ``res_type`` whose ``ref`` points here."""

    res_type: str
    ref: str


@dataclass(frozen=True)
class Criterion:
    """One ``name=value`` of the query. ``path`` is the chain (several links for
    ``subject:Patient.name``) after any ``_has`` links; ``values`` are the OR alternatives, still
    escaped for the type-specific split (``|``, ``$``)."""

    name: str
    raw: str
    has: tuple[HasLink, ...]
    path: tuple[Link, ...]
    values: tuple[str, ...]

    @property
    def code(self) -> str:
        return self.path[0].code

    @property
    def modifier(self) -> str | None:
        return self.path[-1].modifier


@dataclass(frozen=True)
class Include:
    """``_include`` / ``_revinclude``: ``source:param[:target]``, ``*`` for all; ``iterate`` for
    ``:iterate`` (R4) or ``:recurse`` (STU3)."""

    source: str
    param: str
    target: str | None = None
    iterate: bool = False


@dataclass
class ResultParams:
    """The parsed result-shaping parameters. ``raw`` keeps every one as given, in order."""

    count: int | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (code, descending)
    include: list[Include] = field(default_factory=list)
    revinclude: list[Include] = field(default_factory=list)
    total: str | None = None
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    contained: str | None = None
    contained_type: str | None = None
    format: str | None = None
    pretty: str | None = None
    raw: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Unsupported:
    """A parameter that was not applied, and why (the caller reports it, or rejects the request
    under ``Prefer: handling=strict``)."""

    name: str
    value: str
    reason: str


# -- values --------------------------------------------------------------------------------
def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with ``\\``; escapes are kept."""
    if "\\" not in text:
        return text.split(sep)
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def unescape(text: str) -> str:
    """``\\,`` ``\\|`` ``\\$`` ``\\\\`` → the character (search.html#escaping)."""
    if "\\" not in text:
        return text
    return re.sub(r"\\([\\,|$])", r"\1", text)


def split_prefix(value: str) -> tuple[str, str]:
    """``ge2013-01-01`` → ``("ge", "2013-01-01")``; no prefix means ``eq``."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2:3].isalpha():
        return value[:2], value[2:]
    return "eq", value


# -- names ---------------------------------------------------------------------------------
_CODE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-\[\]]*$")


def parse_name(name: str) -> tuple[tuple[HasLink, ...], tuple[Link, ...]]:
    """``_has:Observation:patient:code`` and ``subject:Patient.organization.name:exact``."""
    has: list[HasLink] = []
    rest = name
    while rest.startswith("_has:"):
        parts = rest.split(":", 3)
        if len(parts) < 4 or not parts[1] or not parts[2] or not parts[3]:
            raise Invalid(f"{name!r}: _has needs the form _has:Type:reference:parameter")
        has.append(HasLink(parts[1], parts[2]))
        rest = parts[3]
    links = []
    for piece in rest.split("."):
        code, _, modifier = piece.partition(":")
        if not _CODE.match(code):
            raise Invalid(f"{name!r} is not a valid search parameter name")
        links.append(Link(code, modifier or None))
    return tuple(has), tuple(links)


_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")


def chain_types(name: str) -> tuple[str, ...] | None:
    """The resource types a chained (``subject:Patient.name``) or reverse-chained
    (``_has:Observation:patient:code``) parameter looks into, as its name gives them: each
    ``_has`` source type and each ``:Type`` of a chain link (empty: a chain naming no type,
    ``subject.name``). None: the name is neither, or not a valid name (then it is not applied)."""
    if "." not in name and not name.startswith("_has:"):
        return None
    try:
        has, path = parse_name(name)
    except Invalid:
        return None
    if not has and len(path) < 2:
        return None
    named = [h.res_type for h in has] + [link.modifier or "" for link in path]
    return tuple(t for t in named if _TYPE_NAME.match(t))


def asks_explain(query: Sequence[tuple[str, str]]) -> bool:
    """Whether the query has an ``_explain`` parameter, whatever its value."""
    return any(name == "_explain" for name, _ in query)


def reject_nul(name: str, value: str) -> None:
    """400 for a NUL character in a parameter's name or value: no FHIR value contains one
    (R4 datatypes.html#string) and PostgreSQL text cannot hold one."""
    if "\x00" in name or "\x00" in value:
        raise Invalid(f"search parameter {name!r}: a NUL character (%00) is not allowed")


# -- the whole query -----------------------------------------------------------------------
@dataclass
class ParsedQuery:
    """A search query parsed once: the criteria, the result parameters, ``_type``, what could
    not be parsed, and the control parameters (``CONTROL_PARAMS``): ``page`` (the ``_page``
    cursor), ``explain`` (``_explain=true``), ``control`` (each as given). ``pairs``: the query
    without the control parameters, in order (what a ``self`` link shows)."""

    criteria: list[Criterion]
    result: ResultParams
    types: list[str] | None  # _type, for a system search
    unsupported: list[Unsupported]
    page: str | None = None
    explain: bool = False
    control: list[tuple[str, str]] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)


def parse_query(query: Sequence[tuple[str, str]]) -> ParsedQuery:
    criteria: list[Criterion] = []
    result = ResultParams()
    types: list[str] | None = None
    unsupported: list[Unsupported] = []
    control: list[tuple[str, str]] = []
    pairs: list[tuple[str, str]] = []
    for name, value in query:
        if name in CONTROL_PARAMS:  # checked where they are used (the cursor's decoder)
            control.append((name, value))
            continue
        reject_nul(name, value)
        pairs.append((name, value))
        base = name.split(":", 1)[0]
        if base in RESULT_PARAMS:
            _result_param(result, name, value)
            continue
        if name == "_type":
            listed = [unescape(t).strip() for t in split_escaped(value, ",") if t.strip()]
            types = listed if types is None else [t for t in types if t in listed]
            continue
        try:
            has, path = parse_name(name)
        except Invalid as exc:
            unsupported.append(Unsupported(name, value, exc.diagnostics))
            continue
        values = tuple(split_escaped(value, ","))
        criteria.append(Criterion(name, value, has, path, values))
    page = next((v for k, v in control if k == "_page"), None)
    explain = any(k == "_explain" and v == "true" for k, v in control)
    return ParsedQuery(criteria, result, types, unsupported, page, explain, control, pairs)


def _result_param(result: ResultParams, name: str, value: str) -> None:
    result.raw.append((name, value))
    base, _, modifier = name.partition(":")
    if base == "_count":
        if not is_whole(value):
            raise Invalid(f"_count must be a non-negative integer, not {value!r}")
        result.count = clamp_whole(value, INT4_MAX)
    elif base == "_sort":
        for key in value.split(","):
            key = key.strip()
            if not key:
                continue
            desc = key.startswith("-")
            result.sort.append((key[1:] if desc else key, desc))
    elif base in ("_include", "_revinclude"):
        if modifier not in ("", "iterate", "recurse"):
            raise Invalid(f"{name}: unknown modifier {modifier!r}")
        inc = parse_include(value, iterate=bool(modifier))
        (result.include if base == "_include" else result.revinclude).append(inc)
    elif base == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise Invalid(f"_total must be none, estimate or accurate, not {value!r}")
        result.total = value
    elif base == "_summary":
        if value not in ("true", "false", "text", "data", "count"):
            raise Invalid(f"_summary must be true, false, text, data or count, not {value!r}")
        result.summary = value
    elif base == "_elements":
        result.elements.extend(e.strip() for e in value.split(",") if e.strip())
    elif base == "_contained":
        if value not in ("true", "false", "both"):
            raise Invalid(f"_contained must be true, false or both, not {value!r}")
        result.contained = value
    elif base == "_containedType":
        if value not in ("container", "contained"):
            raise Invalid(f"_containedType must be container or contained, not {value!r}")
        result.contained_type = value
    elif base == "_format":
        result.format = value
    elif base == "_pretty":
        result.pretty = value


def parse_include(value: str, *, iterate: bool = False) -> Include:
    """``Observation:subject``, ``Observation:subject:Patient``, ``*``."""
    if value == "*":
        return Include("*", "*", None, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise Invalid(f"_include/_revinclude value {value!r} is not Type:parameter[:TargetType]")
    return Include(parts[0], parts[1], parts[2] if len(parts) == 3 else None, iterate)
