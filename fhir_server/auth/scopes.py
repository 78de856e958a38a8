"""SMART scopes (App Launch 2.2 scopes-and-launch-context): ``patient/Observation.rs``,
``user/*.cruds``, ``system/*.rs`` and their v1 forms (``.read``, ``.write``, ``.*``).

A scope is parsed into a ``Grant`` (context, resource type, permissions); v1 ``read`` means
``rs``, ``write`` means ``cud``. A v1 scope granted as asked is written back in its v1 form
(``system/*.read`` is granted as ``system/*.read``, not ``system/*.rs``), so a v1 client finds
the scope it asked for in the token response. Scopes with query parameters (``?category=…``) are not granted
(Hearth does not implement them and never widens what a client asked for).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

PERMS = "cruds"
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)$")
_V1 = {"read": "rs", "write": "cud", "*": PERMS}
# Scopes that ask for context or identity rather than data.
NON_DATA = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)


@dataclass(frozen=True)
class Grant:
    context: str  # patient | user | system
    res_type: str  # a type or "*"
    perms: frozenset[str]
    v1: str | None = field(default=None, compare=False)  # "read" / "write" / "*" as asked

    def covers(self, res_type: str, perm: str) -> bool:
        return self.res_type in ("*", res_type) and perm in self.perms

    def __str__(self) -> str:
        if self.v1 is not None and frozenset(_V1[self.v1]) == self.perms:
            return f"{self.context}/{self.res_type}.{self.v1}"
        return f"{self.context}/{self.res_type}.{''.join(p for p in PERMS if p in self.perms)}"


def parse_grant(scope: str) -> Grant | None:
    m = _SCOPE.match(scope)
    if m is None or not m.group(3):
        return None
    perms = _V1.get(m.group(3), m.group(3))
    v1 = m.group(3) if m.group(3) in _V1 else None
    return Grant(m.group(1), m.group(2), frozenset(perms), v1)


def invalid_data_scopes(text: str, known_type: Callable[[str], bool]) -> list[str]:
    """The requested scopes that look like data scopes (``system/…``, ``user/…``,
    ``patient/…``) but are not valid ones: an unknown permission (``system/Patient.foo``) or a
    resource type that ``known_type`` does not know (``system/UnknownResource.read``) --
    RFC 6749 5.2 ``invalid_scope`` ("invalid, unknown, or malformed")."""
    bad = []
    for s in text.split():
        if not s.startswith(("system/", "user/", "patient/")):
            continue
        g = parse_grant(s.split("?", 1)[0])
        if g is None or (g.res_type != "*" and not known_type(g.res_type)):
            bad.append(s)
    return bad


@dataclass(frozen=True)
class Scopes:
    """A token's scopes: its data grants and its other (context, identity) scopes."""

    grants: tuple[Grant, ...]
    other: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scopes:
        """The scopes of ``text``; the same text parses once per process (a token's scope is
        parsed on every request it makes, and ``Scopes`` is immutable)."""
        return _parse(text)

    def __str__(self) -> str:
        return " ".join([*sorted(self.other), *(str(g) for g in self.grants)])

    def has(self, scope: str) -> bool:
        return scope in self.other

    def contexts_for(self, res_type: str, perm: str) -> set[str]:
        return {g.context for g in self.grants if g.covers(res_type, perm)}

    def types_for(self, perm: str) -> frozenset[str] | None:
        """The types readable with ``perm`` (None: every type)."""
        types = {g.res_type for g in self.grants if perm in g.perms}
        return None if "*" in types else frozenset(types)

    def narrowed(self, allowed: Scopes, *, contexts: set[str] | None = None) -> Scopes:
        """These scopes cut down to what ``allowed`` permits (per type and permission),
        optionally keeping only grants of ``contexts``. Never widens anything."""
        out = []
        for g in self.grants:
            if contexts is not None and g.context not in contexts:
                continue
            perms: set[str] = set()
            for a in allowed.grants:
                if not _context_ok(a.context, g.context):
                    continue
                if a.res_type in ("*", g.res_type):
                    perms |= a.perms & g.perms
                elif g.res_type == "*" and a.perms & g.perms:
                    # a wildcard request keeps what the ceiling allows on each specific type
                    out.append(Grant(g.context, a.res_type, frozenset(a.perms & g.perms), g.v1))
            if perms:
                out.append(Grant(g.context, g.res_type, frozenset(perms), g.v1))
        return Scopes(tuple(out), self.other & (allowed.other | NON_DATA))

    def within(self, other: Scopes) -> bool:
        """Every grant here is covered by ``other`` (no escalation, e.g. on refresh)."""
        return (
            all(
                any(
                    o.context == g.context
                    and o.res_type in ("*", g.res_type)
                    and g.perms <= o.perms
                    for o in other.grants
                )
                for g in self.grants
            )
            and self.other <= other.other
        )


def _context_ok(allowed: str, asked: str) -> bool:
    """A user-level allowance also allows patient-level grants (a narrower view); system
    scopes are only for system (backend) clients."""
    return allowed == asked or (allowed == "user" and asked == "patient")


@lru_cache(maxsize=1024)
def _parse(text: str) -> Scopes:
    grants, other = [], set()
    for s in text.split():
        g = parse_grant(s)
        if g is not None:
            grants.append(g)
        elif s in NON_DATA:
            other.add(s)
    return Scopes(tuple(grants), frozenset(other))
