"""Hearth's durable bytes that are not resources — DICOM instance files and Bulk Data export
files — behind one small interface with two backends: a folder (one node, or a mount every node
shares) and the database itself (chunked rows, so a cluster needs nothing but its PostgreSQL).

A blob is named by a key of ``/``-separated segments (letters, digits, ``.``, ``_``, ``-``; no
segment starting with ``.``). Writing is all or nothing: a reader sees the previous content or
the new one, never a part; a write that fails leaves the previous content. ``HEARTH_BLOB_STORE``
picks the backend (docs/deployment.md "No node-local state").
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

import sqlalchemy as sa

from resources.errors import NotFound
from resources.storage.db import READONLY
from resources.storage.schema import UtcDateTime, metadata

CHUNK = 1 << 20  # bytes per database row: large enough to be cheap, small enough to stream
SPOOL = 16 << 20  # a database blob read up to this size stays in memory, beyond it a temp file

# The top-level folders of Hearth's blobs: DICOM instances (resources/storage/instances.py) and
# Bulk Data export files (resources/jobs/bulk_export.py). A backup copies these
# (resources/storage/backup.py); a new kind of blob adds its folder here.
PREFIXES = ("dicom", "exports")

_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")

blob = sa.Table(
    "blob",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("generation", sa.String(32), nullable=False),  # which write's chunks are current
    sa.Column("created", UtcDateTime(), nullable=False),
)

blob_chunk = sa.Table(
    "blob_chunk",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("generation", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


def check_key(key: str) -> str:
    """``key`` when it is a well-formed blob key; ``ValueError`` otherwise (never a path that
    climbs out of the store)."""
    parts = key.split("/") if isinstance(key, str) else []
    if not parts or len(key) > 512 or not all(_SEGMENT.match(p) for p in parts):
        raise ValueError(f"{key!r} is not a blob key")
    return key


class BlobStore(Protocol):
    def put(self, key: str, data: bytes | Iterable[bytes]) -> int:
        """Store ``data`` under ``key`` (replacing what was there) all or nothing; its size."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The blob for reading (seekable); ``NotFound`` when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the blob; whether there was one."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob under ``prefix/``; how many."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix/``, sorted."""
        ...

    def stamp(self, key: str) -> str | None:
        """A token that changes whenever ``key`` is written again; None when there is no blob."""
        ...


class FileBlobs:
    """Blobs as files under ``root`` (``root/<key>``): a put writes a temporary file beside the
    final name, fsyncs it and renames it over, so a crash leaves the old file or the new one."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes | Iterable[bytes]) -> int:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", suffix=".part", dir=final.parent)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(data):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"{key} is not stored") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def stamp(self, key: str) -> str | None:
        try:
            st = self.path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def delete_prefix(self, prefix: str) -> int:
        import shutil

        folder = self.path(prefix)
        n = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return n

    def keys(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


class DatabaseBlobs:
    """Blobs in the database: ``blob`` names each one and its current generation, ``blob_chunk``
    holds its bytes in rows of at most ``CHUNK``. A put inserts the new generation's chunks (one
    short transaction each, so a 1 GB instance never holds one transaction open), then switches
    ``blob`` to it and deletes the generation it replaced in one transaction (switches of one
    key take turns), so readers see one or the other and a concurrent put's chunks are never
    deleted under it. A put that fails removes its own chunks; a process killed in the middle
    of a put leaves chunks no ``blob`` row names (space, never content: nothing reads them)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def put(self, key: str, data: bytes | Iterable[bytes]) -> int:
        import uuid

        check_key(key)
        generation = uuid.uuid4().hex
        size = seq = 0
        try:
            for chunk in _rechunk(_chunks(data), CHUNK):
                with self.engine.begin() as conn:
                    conn.execute(
                        sa.insert(blob_chunk).values(
                            key=key, generation=generation, seq=seq, data=chunk
                        )
                    )
                seq += 1
                size += len(chunk)
            with self.engine.begin() as conn:
                values = {
                    "size": size,
                    "chunks": seq,
                    "generation": generation,
                    "created": datetime.now(UTC),
                }
                # Switches of one key one after the other (SQLite's writer lock already does
                # that), each deleting the generation it replaced, never one still being written
                # by a concurrent put (whose own switch comes later).
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))
                replaced = conn.execute(
                    sa.select(blob.c.generation).where(blob.c.key == key)
                ).scalar_one_or_none()
                conn.execute(_upsert(conn, key, values))
                if replaced is not None and replaced != generation:
                    conn.execute(
                        sa.delete(blob_chunk).where(
                            blob_chunk.c.key == key, blob_chunk.c.generation == replaced
                        )
                    )
        except BaseException:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.delete(blob_chunk).where(
                        blob_chunk.c.key == key, blob_chunk.c.generation == generation
                    )
                )
            raise
        return size

    def _reading(self) -> sa.Connection:
        return self.engine.connect().execution_options(
            **_SNAPSHOT.get(self.engine.dialect.name, {})
        )

    def _current(self, conn: sa.Connection, key: str) -> sa.Row | None:
        return conn.execute(
            sa.select(blob.c.generation, blob.c.chunks, blob.c.size).where(blob.c.key == key)
        ).first()

    def open(self, key: str) -> BinaryIO:
        check_key(key)
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 (returned open)
        # one snapshot for the whole read: a put switching generations meanwhile (and deleting
        # the old chunks) does not pull the chunks from under it
        with self.engine.connect().execution_options(
            **_SNAPSHOT.get(self.engine.dialect.name, {})
        ) as conn:
            row = self._current(conn, key)
            if row is None:
                out.close()
                raise NotFound(f"{key} is not stored")
            # one chunk per query: memory stays at one chunk whatever the blob's size
            for seq in range(row.chunks):
                data = conn.execute(
                    sa.select(blob_chunk.c.data).where(
                        blob_chunk.c.key == key,
                        blob_chunk.c.generation == row.generation,
                        blob_chunk.c.seq == seq,
                    )
                ).scalar_one()
                out.write(data)
        out.seek(0)
        return out  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        check_key(key)
        with self._reading() as conn:
            return self._current(conn, key) is not None

    def size(self, key: str) -> int | None:
        """The stored size of ``key``; None when there is no blob."""
        check_key(key)
        with self._reading() as conn:
            row = self._current(conn, key)
        return None if row is None else int(row.size)

    def stamp(self, key: str) -> str | None:
        check_key(key)
        with self._reading() as conn:
            row = self._current(conn, key)
        return None if row is None else str(row.generation)

    def delete(self, key: str) -> bool:
        check_key(key)
        with self.engine.begin() as conn:
            gone = conn.execute(sa.delete(blob).where(blob.c.key == key)).rowcount
            conn.execute(sa.delete(blob_chunk).where(blob_chunk.c.key == key))
        return bool(gone)

    def _under(self, column: sa.ColumnElement, prefix: str) -> sa.ColumnElement:
        start = check_key(prefix) + "/"
        # keys are ASCII: every key under ``prefix/`` sorts in [prefix/, prefix0)
        return sa.and_(column >= start, column < check_key(prefix) + "0")

    def delete_prefix(self, prefix: str) -> int:
        with self.engine.begin() as conn:
            n = conn.execute(sa.delete(blob).where(self._under(blob.c.key, prefix))).rowcount
            conn.execute(sa.delete(blob_chunk).where(self._under(blob_chunk.c.key, prefix)))
        return n

    def keys(self, prefix: str) -> list[str]:
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(blob.c.key).where(self._under(blob.c.key, prefix)).order_by(blob.c.key)
            )
            return [r.key for r in rows]


def blob_store(kind: str, data_dir: Path | str, engine: sa.Engine) -> BlobStore:
    """The configured backend: ``files`` (under ``data_dir``) or ``database``."""
    if kind == "files":
        return FileBlobs(Path(data_dir))
    if kind == "database":
        return DatabaseBlobs(engine)
    raise ValueError(f"unknown blob store {kind!r} (files or database)")


_SNAPSHOT: dict[str, dict[str, object]] = {
    "postgresql": {"isolation_level": "REPEATABLE READ"},
    "sqlite": {READONLY: True},
}


def _upsert(conn: sa.Connection, key: str, values: dict) -> sa.Executable:
    """Insert the ``blob`` row of ``key`` or, when another put made it first, update it."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(blob).values(key=key, **values)
    return stmt.on_conflict_do_update(index_elements=[blob.c.key], set_=values)


def _chunks(data: bytes | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    else:
        yield from data


def _rechunk(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in pieces of exactly ``size`` (the last one shorter)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)
