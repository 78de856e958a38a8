"""64-bit hash keys for index rows, after HAPI FHIR's ``HASH_IDENTITY`` / ``HASH_SYS_AND_VALUE``
columns: a (resource type, parameter) identity and the identity combined with a value are stored
as signed BIGINTs, so every lookup is an equality on one compact indexed column.

The hash is BLAKE2b with an 8-byte digest; it is stable across processes and versions (it is
stored), so never change it without re-indexing. Collisions are possible in principle (2^-64 per
pair) and are accepted, as HAPI does.
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b

_SEP = "\x1f"


def _digest(text: str) -> int:
    return int.from_bytes(
        blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big", signed=True
    )


@lru_cache(maxsize=65536)
def identity(res_type: str, code: str) -> int:
    """The key of one search parameter on one resource type."""
    return _digest(res_type + _SEP + code)


def contained_identity(res_type: str, code: str) -> int:
    """The key of one search parameter on resources of ``res_type`` contained in another
    (``_contained``, search.html#contained): their rows belong to the container's row and never
    answer a search of the type itself. ``#`` is in no resource type's name."""
    return _digest("#" + res_type + _SEP + code)


@lru_cache(maxsize=1 << 18)
def combine(ident: int, *parts: str) -> int:
    """The key of a value (one or more strings) under a parameter identity. Cached: codes,
    systems and units repeat across resources far more often than not."""
    return _digest(str(ident) + _SEP + _SEP.join(parts))
