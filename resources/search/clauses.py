"""The pieces every parameter type builds its SQL from.

A criterion compiles to a ``PkSet``: the primary keys of the resources it selects, usually
``SELECT res_pk FROM idx_x WHERE ...`` (or the complement of such a set, for ``:not`` and
``:missing=true``). The compiler intersects the sets of a query. The ``Target`` names the
parameter and the identity keys of the resource types searched (one type, or several for a
system search with ``_type``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.search.definitions import SearchParam


@dataclass(frozen=True)
class Target:
    """A parameter being searched, and its identity key for each resource type searched."""

    param: SearchParam
    res_types: tuple[str, ...]
    idents: tuple[int, ...]

    @property
    def code(self) -> str:
        return self.param.code


def identity_in(table: sa.Table, idents: Sequence[int]) -> ColumnElement[bool]:
    col = table.c.hash_identity
    return col == idents[0] if len(idents) == 1 else col.in_(list(idents))


def key_in(col: sa.ColumnElement, keys: Sequence[int]) -> ColumnElement[bool]:
    keys = list(dict.fromkeys(keys))
    return col == keys[0] if len(keys) == 1 else col.in_(keys)


@dataclass(frozen=True)
class PkSet:
    """The resources a criterion selects, as a ``SELECT`` of their primary keys; ``negated``: the
    criterion selects every resource of the searched type(s) except these. ``unique``: the
    select yields each pk once (an index table may yield a resource several times).
    ``has``: for a reverse chain (``_has``) on one type, its parts (a page may be read from
    the searched type's side with them)."""

    select: sa.Select
    negated: bool = False
    unique: bool = False
    has: HasParts | None = None


@dataclass(frozen=True)
class HasParts:
    """A reverse chain ``_has:Source:ref:...``: ``sources``, the ``SELECT pk`` of the referring
    resources meeting its inner criteria; ``identity``, the identity key of ``Source.ref`` (its
    reference rows point at the resources selected)."""

    sources: sa.Select
    identity: int


def pk_in(table: sa.Table, *where: ColumnElement[bool]) -> PkSet:
    """The resources with a row in ``table`` matching ``where``."""
    return PkSet(sa.select(table.c.res_pk).where(*where))


def pk_not_in(table: sa.Table, *where: ColumnElement[bool]) -> PkSet:
    """The resources with no row in ``table`` matching ``where``."""
    return PkSet(sa.select(table.c.res_pk).where(*where), negated=True)


def missing(table: sa.Table, idents: Sequence[int], value: str, res_types: Sequence[str]) -> PkSet:
    """``:missing=true|false`` (search.html#missing): the live resources of the type(s) with no /
    some index row for the parameter, tested per resource through the ``(res_pk,
    hash_identity)`` index (no index leads with the identity alone)."""
    from resources.errors import Invalid
    from resources.storage.schema import resource

    if value not in ("true", "false"):
        raise Invalid(f":missing takes true or false, not {value!r}")
    present = sa.exists(
        sa.select(sa.literal(1)).where(table.c.res_pk == resource.c.pk, identity_in(table, idents))
    )
    stmt = sa.select(resource.c.pk).where(
        resource.c.res_type == res_types[0]
        if len(res_types) == 1
        else resource.c.res_type.in_(list(res_types)),
        resource.c.deleted.is_(False),
        sa.not_(present) if value == "true" else present,
    )
    return PkSet(stmt, unique=True)


def starts_with(col: sa.ColumnElement, prefix: str) -> ColumnElement[bool]:
    """A prefix test as a range on a code-point-ordered column (C collation on PostgreSQL,
    BINARY on SQLite), so a B-tree index serves it."""
    if not prefix:
        return col.is_not(None)
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return sa.and_(col >= prefix, col < upper)


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(col: sa.ColumnElement, text: str) -> ColumnElement[bool]:
    return col.like(f"%{like_escape(text)}%", escape="\\")
