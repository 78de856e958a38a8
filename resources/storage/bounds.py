"""Bounds of the integer columns, and a parser for the whole numbers clients send in URLs.

A number a client sends (a version in ``_history/N``, an audit sequence, a paging cursor, a
``_count``) is checked here before it reaches SQL: PostgreSQL refuses values past its column
types (``integer``, ``bigint``), SQLite values past 64 bits, and Python refuses to parse a
string of more than 4,300 digits.
"""

from __future__ import annotations

INT4_MAX = 2**31 - 1  # integer columns: resource versions
INT8_MAX = 2**63 - 1  # bigint columns: primary keys, audit sequence numbers


def whole(raw: str, maximum: int = INT8_MAX) -> int | None:
    """``raw`` as a whole number (ASCII digits only) if it is one and at most ``maximum``, else
    None. Leading zeros are allowed; signs, spaces, underscores and other scripts' digits are
    not."""
    if not raw or not raw.isascii() or not raw.isdigit():
        return None
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(maximum)):
        return None
    value = int(digits)
    return value if value <= maximum else None


def is_whole(raw: str) -> bool:
    """ASCII digits only (any length)."""
    return bool(raw) and raw.isascii() and raw.isdigit()


def clamp_whole(raw: str, maximum: int) -> int:
    """A whole number (``is_whole``) capped at ``maximum``, however many digits it has."""
    value = whole(raw, maximum)
    return maximum if value is None else value
