"""The pieces every parameter type builds its SQL from.

A criterion compiles to a boolean SQL expression about one row of ``resource`` (or an alias of
it, for chains and ``_has``): usually ``pk IN (SELECT res_pk FROM idx_x WHERE ...)``. The
``Target`` names the parameter and the identity keys of the resource types searched (one type,
or several for a system search with ``_type``).
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


def pk_in(res: sa.FromClause, table: sa.Table, *where: ColumnElement[bool]) -> ColumnElement[bool]:
    """``res.pk IN (SELECT res_pk FROM table WHERE ...)``"""
    return res.c.pk.in_(sa.select(table.c.res_pk).where(*where))


def pk_not_in(
    res: sa.FromClause, table: sa.Table, *where: ColumnElement[bool]
) -> ColumnElement[bool]:
    return res.c.pk.not_in(sa.select(table.c.res_pk).where(*where))


def has_rows(res: sa.FromClause, table: sa.Table, idents: Sequence[int]) -> ColumnElement[bool]:
    """The resource has at least one index row for the parameter (correlated, so it uses the
    ``(res_pk, hash_identity)`` index)."""
    return sa.exists(
        sa.select(sa.literal(1)).where(table.c.res_pk == res.c.pk, identity_in(table, idents))
    )


def missing(
    res: sa.FromClause, tables: Sequence[sa.Table], idents: Sequence[int], value: str
) -> ColumnElement[bool]:
    """``:missing=true|false`` (search.html#missing)."""
    from resources.errors import Invalid

    if value not in ("true", "false"):
        raise Invalid(f":missing takes true or false, not {value!r}")
    present = sa.or_(*(has_rows(res, t, idents) for t in tables))
    return sa.not_(present) if value == "true" else present


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
