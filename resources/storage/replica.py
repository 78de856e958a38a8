"""Reads from a PostgreSQL streaming replica, with read-your-writes (docs/deployment.md, "A
read replica").

A request may carry the LSN (log sequence number) of its client's last write — the
``X-Hearth-LSN`` header or the ``hearth_lsn`` cookie that Hearth's answer to that write set. The
edge puts it in this module's per-request :class:`Consistency`; the repository
(``resources/storage/repository.py``) then reads from the replica only once the replica has
replayed that far (``pg_last_wal_replay_lsn()``), and from the primary otherwise. A request with
no LSN reads from the replica as it is (a replica lags by milliseconds to seconds). A write
records the primary's LSN after its commit (``pg_current_wal_lsn()``) in ``wrote``, which the
edge hands back to the client.
"""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from dataclasses import dataclass

_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


@dataclass
class Consistency:
    at_least: str | None = None  # the LSN this request must see (its client's last write)
    wrote: str | None = None  # the primary's LSN after this request's last write


_current: ContextVar[Consistency | None] = ContextVar("hearth_consistency", default=None)


def parse_lsn(text: str | None) -> str | None:
    """``text`` when it is a PostgreSQL LSN (``16/B374D848``), else None (ignored, not an error:
    a stale or foreign cookie must not break a read)."""
    if text and _LSN.match(text.strip()):
        return text.strip().upper()
    return None


def lsn_value(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def later(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if lsn_value(a) >= lsn_value(b) else b


def begin(at_least: str | None) -> tuple[Consistency, Token]:
    c = Consistency(at_least=parse_lsn(at_least))
    return c, _current.set(c)


def end(token: Token) -> None:
    _current.reset(token)


def current() -> Consistency | None:
    return _current.get()
