"""Search index tables, one per search parameter type (after HAPI FHIR's ``HFJ_SPIDX_*`` and
``HFJ_RES_LINK`` tables).

Every row holds ``res_pk`` (``resource.pk`` of the current version; rows of older versions and of
deleted resources are removed by the repository) and ``hash_identity``, the 64-bit key of
(resource type, parameter code) from ``resources.search.keys``. Value columns are typed; exact
lookups go through further 64-bit keys that combine the identity with the value, so the hot
indexes are narrow integer B-trees. Text columns that are searched by prefix use the ``C``
collation on PostgreSQL, so a range ``value >= 'ab' AND value < 'ac'`` is a prefix test there and
on SQLite alike.

Each table has an index on ``(res_pk, hash_identity)``: deleting a resource's rows, ``:missing``,
``_include`` and sorting all start from a resource.
"""

from __future__ import annotations

import sqlalchemy as sa

from resources.storage.schema import metadata

# Longest stored text values; longer ones are truncated (prefix searches on them still work, an
# exact match on a longer value is checked through a hash of the full value where one exists).
STRING_LEN = 255
URI_LEN = 512


def _text(length: int) -> sa.types.TypeEngine:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


Key = sa.BigInteger
Pk = sa.BigInteger
Double = sa.Float(precision=53).with_variant(sa.Double(), "postgresql")


def _by_resource(name: str) -> sa.Index:
    return sa.Index(f"ix_{name}_res", "res_pk", "hash_identity")


# string: case- and accent-insensitive starts-with / contains on value_norm, :exact on hash_exact.
idx_string = sa.Table(
    "idx_string",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("value_norm", _text(STRING_LEN), nullable=False),
    sa.Column("hash_exact", Key, nullable=False),
    _by_resource("idx_string"),
    sa.Index("ix_idx_string_norm", "hash_identity", "value_norm", "res_pk"),
    sa.Index("ix_idx_string_exact", "hash_exact", "res_pk"),
)

# token: code / system|code / |code / system| through hashes; display and text for :text.
# Identifier.type for :of-type and Reference.identifier for reference :identifier are token rows
# too (under their own keys, see token.py).
idx_token = sa.Table(
    "idx_token",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("hash_value", Key, nullable=True),  # (identity, code)
    sa.Column("hash_sys_value", Key, nullable=True),  # (identity, system or "", code)
    sa.Column("hash_system", Key, nullable=True),  # (identity, system)
    sa.Column("system", _text(URI_LEN), nullable=True),
    sa.Column("value", _text(STRING_LEN), nullable=True),
    sa.Column("text_norm", _text(STRING_LEN), nullable=True),
    _by_resource("idx_token"),
    sa.Index("ix_idx_token_value", "hash_value", "res_pk"),
    sa.Index("ix_idx_token_sys_value", "hash_sys_value", "res_pk"),
    sa.Index("ix_idx_token_system", "hash_system", "res_pk"),
)
# :text, on the rows that have a display or text only.
sa.Index(
    "ix_idx_token_text",
    idx_token.c.hash_identity,
    idx_token.c.text_norm,
    postgresql_where=idx_token.c.text_norm.is_not(None),
    sqlite_where=idx_token.c.text_norm.is_not(None),
)

# reference: local targets as (type, id[, version]); absolute and canonical targets as url.
idx_reference = sa.Table(
    "idx_reference",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("target_type", sa.String(64), nullable=True),
    sa.Column("target_id", sa.String(64), nullable=True),
    sa.Column("target_version", sa.String(64), nullable=True),
    sa.Column("url", _text(URI_LEN), nullable=True),
    sa.Column("hash_url", Key, nullable=True),  # (identity, url without |version)
    _by_resource("idx_reference"),
    sa.Index("ix_idx_reference_target", "hash_identity", "target_id", "target_type", "res_pk"),
    sa.Index("ix_idx_reference_url", "hash_url", "res_pk"),
)

# date: the value's implicit range as UTC epoch microseconds, both ends inclusive.
idx_date = sa.Table(
    "idx_date",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("low", sa.BigInteger, nullable=False),
    sa.Column("high", sa.BigInteger, nullable=False),
    _by_resource("idx_date"),
    sa.Index("ix_idx_date_low", "hash_identity", "low", "high"),
    sa.Index("ix_idx_date_high", "hash_identity", "high", "low"),
)

# number: the value (low == high) or a range.
idx_number = sa.Table(
    "idx_number",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("low", Double, nullable=False),
    sa.Column("high", Double, nullable=False),
    _by_resource("idx_number"),
    sa.Index("ix_idx_number_low", "hash_identity", "low", "high"),
    sa.Index("ix_idx_number_high", "hash_identity", "high", "low"),
)

# quantity: value or range, with the unit as keys; UCUM quantities get a second row in canonical
# units under the identity of "<code>:ucum" (see quantity.py).
idx_quantity = sa.Table(
    "idx_quantity",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("hash_code", Key, nullable=True),  # (identity, code or unit)
    sa.Column("hash_sys_code", Key, nullable=True),  # (identity, system, code)
    sa.Column("low", Double, nullable=False),
    sa.Column("high", Double, nullable=False),
    _by_resource("idx_quantity"),
    sa.Index("ix_idx_quantity_value", "hash_identity", "low", "high"),
    sa.Index("ix_idx_quantity_code", "hash_code", "low", "high"),
    sa.Index("ix_idx_quantity_sys_code", "hash_sys_code", "low", "high"),
)

# uri: exact and :below through (identity, uri); :above through the prefixes of the search value.
idx_uri = sa.Table(
    "idx_uri",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("uri", _text(URI_LEN), nullable=False),
    _by_resource("idx_uri"),
    sa.Index("ix_idx_uri_uri", "hash_identity", "uri", "res_pk"),
)

# composite: one row per element and combination of component keys (see composite.py). The
# tokens (and references) of the components are folded into hash_key; a quantity, number or date
# last component is kept as a range in low/high (a quantity's unit in hash_unit / hash_sys_unit),
# a second numeric one in low2/high2, a string one in text_norm.
idx_composite = sa.Table(
    "idx_composite",
    metadata,
    sa.Column("res_pk", Pk, nullable=False),
    sa.Column("hash_identity", Key, nullable=False),
    sa.Column("hash_key", Key, nullable=False),
    sa.Column("hash_unit", Key, nullable=True),  # (code or unit) of a quantity component
    sa.Column("hash_sys_unit", Key, nullable=True),  # (system, code) of a quantity component
    sa.Column("low", Double, nullable=True),
    sa.Column("high", Double, nullable=True),
    sa.Column("low2", Double, nullable=True),
    sa.Column("high2", Double, nullable=True),
    sa.Column("text_norm", _text(STRING_LEN), nullable=True),
    _by_resource("idx_composite"),
    sa.Index("ix_idx_composite_key", "hash_key", "low", "high"),
)

INDEX_TABLES: tuple[sa.Table, ...] = (
    idx_string,
    idx_token,
    idx_reference,
    idx_date,
    idx_number,
    idx_quantity,
    idx_uri,
    idx_composite,
)

# Every row dict of a table carries all of its columns (None where empty), so rows can be
# inserted with one executemany per table.
COLUMNS: dict[sa.Table, tuple[str, ...]] = {
    t: tuple(c.name for c in t.columns) for t in INDEX_TABLES
}


assert all(cols[0] == "res_pk" for cols in COLUMNS.values())


def index_tables() -> tuple[sa.Table, ...]:
    """All search index tables (delete a resource's rows from each before re-indexing it)."""
    return INDEX_TABLES
