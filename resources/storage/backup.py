"""Backups that restore: one file holding the database and the blob store, encrypted, with a
manifest of SHA-256 digests, and its restore into an empty database (docs/deployment.md,
"Backups").

The database is one consistent snapshot taken while Hearth keeps writing: ``pg_dump`` (custom
format; its own repeatable-read snapshot) on PostgreSQL, SQLite's online backup API on SQLite.
The blob store's files (``HEARTH_BLOB_STORE=files``) are copied after the snapshot, so every blob
the snapshot names is there; blobs in the database travel inside the dump. A few more files may
ride along (the caller's: the data directory's secret-key file, without which stored secrets
cannot be read).

The parts are written as a tar (``manifest.json`` last: format, what was backed up, each
member's size and SHA-256), which is encrypted with age (the ``pyrage`` binding of rage) to one
or more X25519 recipients: the machine that backs up holds only public keys; restoring and
verifying need an identity. Plaintext exists only in a private temporary folder (0700) while a
backup is written or read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from resources.storage.blobs import PREFIXES, BlobStore

FORMAT = "hearth-backup/1"
DB_PG, DB_SQLITE = "database.pgdump", "database.sqlite"
MANIFEST = "manifest.json"
BLOBS = "blobs/"
FILES = "files/"
_COPY = 1 << 20


class BackupError(Exception):
    """A backup cannot be made, read, verified or restored; the message says why."""


@dataclass
class Manifest:
    created: str
    database: str  # postgresql | sqlite
    migration: str | None
    blob_store: str  # files | database
    members: dict[str, dict] = field(default_factory=dict)  # name -> {size, sha256}
    resources: int = 0  # current resources (PostgreSQL: at least, counted before the snapshot)
    audit_events: int = 0
    format: str = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise BackupError(f"not a {FORMAT} backup (format {raw.get('format')!r})")
            return cls(**raw)
        except (ValueError, TypeError) as exc:
            raise BackupError(f"the backup's manifest is unreadable: {exc}") from None


def _recipients(keys: list[str]):  # type: ignore[no-untyped-def]
    from pyrage import x25519

    if not keys:
        raise BackupError(
            "no backup recipient: set HEARTH_BACKUP_RECIPIENTS to one or more age public keys "
            "(age1…; `hearth backup keygen` makes a pair)"
        )
    try:
        return [x25519.Recipient.from_str(k.strip()) for k in keys]
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own types
        raise BackupError(f"a backup recipient is not an age X25519 public key: {exc}") from None


def identities(path: Path | None):  # type: ignore[no-untyped-def]
    """The age identities (AGE-SECRET-KEY-1…) in ``path``, one per line."""
    from pyrage import x25519

    if path is None:
        raise BackupError(
            "no backup identity: set HEARTH_BACKUP_IDENTITY_FILE to the file holding the age "
            "secret key the backup was encrypted to"
        )
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
        keys = [x25519.Identity.from_str(line) for line in lines if line.startswith("AGE-SECRET")]
    except OSError as exc:
        raise BackupError(f"cannot read the backup identity file {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise BackupError(f"{path} holds an invalid age identity: {exc}") from None
    if not keys:
        raise BackupError(f"{path} holds no age identity (AGE-SECRET-KEY-1…)")
    return keys


def keygen() -> tuple[str, str]:
    """A new (identity, recipient) pair: keep the first secret, give the second to backups."""
    from pyrage import x25519

    ident = x25519.Identity.generate()
    return str(ident), str(ident.to_public())


@contextmanager
def _private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hearth-backup-"))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as a libpq connection URI (pg_dump / pg_restore)."""
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: postgresql-client-15)")
    return found


def _run(cmd: list[str], what: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _sqlite_path(url: str) -> Path:
    u = make_url(url)
    if not u.database or u.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(u.database)


def _kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise BackupError(f"cannot back up a {backend} database")
    return backend


def _counts(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        resources = conn.execute(sa.text("SELECT count(*) FROM resource")).scalar_one()
        audit = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()
    return int(resources), int(audit)


class _Writer:
    """Members into the tar, each one's digest into the manifest."""

    def __init__(self, tar: tarfile.TarFile, manifest: Manifest) -> None:
        self.tar, self.manifest = tar, manifest

    def add_stream(self, name: str, stream: BinaryIO, size: int) -> None:
        digest = hashlib.sha256()

        class Hashing(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
                chunk = stream.read(len(b))
                digest.update(chunk)
                b[: len(chunk)] = chunk
                return len(chunk)

        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(datetime.now(UTC).timestamp())
        self.tar.addfile(info, io.BufferedReader(Hashing(), _COPY))
        self.manifest.members[name] = {"size": size, "sha256": digest.hexdigest()}

    def add_file(self, name: str, path: Path) -> None:
        with path.open("rb") as f:
            self.add_stream(name, f, path.stat().st_size)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))


def create(
    engine: sa.Engine,
    blobs: BlobStore,
    blob_kind: str,
    out: Path,
    recipients: list[str],
    *,
    migration: str | None,
    extra_files: dict[str, Path] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Manifest:
    """Back up the database of ``engine`` and ``blobs`` into the encrypted file ``out``."""
    keys = _recipients(recipients)
    url = engine.url.render_as_string(hide_password=False)
    kind = _kind(url)
    manifest = Manifest(
        created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        database=kind,
        migration=migration,
        blob_store=blob_kind,
    )
    with _private_dir() as tmp:
        tar_path = tmp / "backup.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            w = _Writer(tar, manifest)
            dump = tmp / "db"
            if kind == "postgresql":
                # Counted just before the dump's snapshot: the backup holds at least these.
                manifest.resources, manifest.audit_events = _counts(engine)
                pg_dump = _pg_tool("pg_dump")
                _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}", f"--dbname={_libpq(url)}"], "pg_dump")  # fmt: skip
                w.add_file(DB_PG, dump)
                restored = None
            else:
                source = sqlite3.connect(_sqlite_path(url))
                target = sqlite3.connect(dump)
                try:
                    source.backup(target)  # SQLite's online backup: one consistent copy
                finally:
                    target.close()
                    source.close()
                w.add_file(DB_SQLITE, dump)
                restored = sa.create_engine(f"sqlite:///{dump}")
            say(f"database snapshot: {manifest.members[DB_PG if kind == 'postgresql' else DB_SQLITE]['size']} bytes")  # fmt: skip
            if restored is not None:  # SQLite: counted in the copy itself, exactly
                try:
                    manifest.resources, manifest.audit_events = _counts(restored)
                finally:
                    restored.dispose()
            n = 0
            if blob_kind == "files":
                for key in (k for prefix in PREFIXES for k in blobs.keys(prefix)):
                    try:
                        stream = blobs.open(key)
                    except Exception:  # noqa: BLE001 - deleted since the listing: not in the snapshot
                        continue
                    with stream:
                        stream.seek(0, os.SEEK_END)
                        size = stream.tell()
                        stream.seek(0)
                        w.add_stream(BLOBS + key, stream, size)
                    n += 1
            say(f"blobs: {n}")
            for name, path in (extra_files or {}).items():
                if path.exists():
                    w.add_file(FILES + name, path)
            w.add_bytes(MANIFEST, manifest.to_json())
        from pyrage import encrypt_file

        partial = out.with_name(out.name + ".partial")
        encrypt_file(str(tar_path), str(partial), keys)
        os.replace(partial, out)
    return manifest


@contextmanager
def opened(path: Path, identity_file: Path | None) -> Iterator[tuple[Manifest, tarfile.TarFile, Path]]:  # fmt: skip
    """Decrypt ``path`` into a private folder and check every member against the manifest;
    yields (manifest, the tar, the folder)."""
    from pyrage import DecryptError, decrypt_file

    ids = identities(identity_file)
    with _private_dir() as tmp:
        tar_path = tmp / "backup.tar"
        try:
            decrypt_file(str(path), str(tar_path), ids)
        except DecryptError as exc:
            raise BackupError(f"{path} cannot be decrypted with this identity: {exc}") from None
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc}") from None
        try:
            tar = tarfile.open(tar_path, "r")
        except tarfile.TarError as exc:
            raise BackupError(f"{path} is not a Hearth backup: {exc}") from None
        with tar:
            try:
                member = tar.getmember(MANIFEST)
            except KeyError:
                raise BackupError(f"{path} has no manifest") from None
            stream = tar.extractfile(member)
            assert stream is not None
            manifest = Manifest.from_json(stream.read())
            names = {m.name for m in tar.getmembers() if m.name != MANIFEST}
            if names != set(manifest.members):
                raise BackupError(
                    f"the backup's members differ from its manifest: {sorted(names ^ set(manifest.members))[:5]}"  # fmt: skip
                )
            for m in tar.getmembers():
                if m.name == MANIFEST:
                    continue
                if not m.isfile():
                    raise BackupError(f"unexpected member {m.name!r}")
                digest = hashlib.sha256()
                f = tar.extractfile(m)
                assert f is not None
                while chunk := f.read(_COPY):
                    digest.update(chunk)
                if digest.hexdigest() != manifest.members[m.name]["sha256"]:
                    raise BackupError(f"{m.name} does not match its SHA-256 in the manifest")
            yield manifest, tar, tmp


def verify(path: Path, identity_file: Path | None) -> Manifest:
    """Decrypt, check every digest, and check that the database part is readable (pg_restore's
    table of contents, or SQLite's integrity check)."""
    with opened(path, identity_file) as (manifest, tar, tmp):
        name = DB_PG if manifest.database == "postgresql" else DB_SQLITE
        target = tmp / name
        _extract(tar, name, target)
        if manifest.database == "postgresql":
            _run([_pg_tool("pg_restore"), "--list", str(target)], "pg_restore --list")
        else:
            conn = sqlite3.connect(target)
            try:
                ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                conn.close()
            if ok != "ok":
                raise BackupError(f"the SQLite database in the backup is damaged: {ok}")
    return manifest


def _extract(tar: tarfile.TarFile, name: str, to: Path) -> None:
    src = tar.extractfile(name)
    assert src is not None
    with src, to.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY)


def _empty(engine: sa.Engine) -> bool:
    return not sa.inspect(engine).get_table_names()


def restore(
    path: Path,
    identity_file: Path | None,
    target_url: str,
    make_blobs: Callable[[sa.Engine], BlobStore],
    *,
    files_to: Path | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Manifest:
    """Restore the backup ``path`` into the EMPTY database at ``target_url`` (same kind as the
    backup's), its blobs into ``make_blobs(engine)`` and its extra files under ``files_to``
    (an existing different file is an error, never overwritten)."""
    kind = _kind(target_url)
    with opened(path, identity_file) as (manifest, tar, tmp):
        if manifest.database != kind:
            raise BackupError(
                f"this is a {manifest.database} backup; it restores into {manifest.database}, "
                f"not {kind}"
            )
        # Extra files first: a conflict stops before the database is touched.
        extra = [m for m in tar.getmembers() if m.name.startswith(FILES)]
        for m in extra:
            rel = Path(m.name.removeprefix(FILES))
            if files_to is None or rel.is_absolute() or ".." in rel.parts:
                continue
            dest = files_to / rel
            f = tar.extractfile(m)
            assert f is not None
            data = f.read()
            if dest.exists() and dest.read_bytes() != data:
                raise BackupError(f"{dest} exists and differs from the backup's copy")
        if kind == "postgresql":
            engine = sa.create_engine(target_url)
            try:
                if not _empty(engine):
                    raise BackupError("the target database is not empty: restore into a new one")
            finally:
                engine.dispose()
            dump = tmp / DB_PG
            _extract(tar, DB_PG, dump)
            _run([_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", f"--dbname={_libpq(target_url)}", str(dump)], "pg_restore")  # fmt: skip
        else:
            dest_db = _sqlite_path(target_url)
            if dest_db.exists() and dest_db.stat().st_size > 0:
                raise BackupError(f"{dest_db} exists: restore into a new SQLite file")
            dest_db.parent.mkdir(parents=True, exist_ok=True)
            partial = dest_db.with_name(dest_db.name + ".partial")
            _extract(tar, DB_SQLITE, partial)
            os.replace(partial, dest_db)
        say(f"database restored ({manifest.resources} resources)")
        engine = sa.create_engine(target_url)
        try:
            store = make_blobs(engine)
            n = 0
            for m in tar.getmembers():
                if m.name.startswith(BLOBS):
                    f = tar.extractfile(m)
                    assert f is not None
                    with f:
                        store.put(m.name.removeprefix(BLOBS), iter(lambda f=f: f.read(_COPY), b""))  # type: ignore[misc]
                    n += 1
            say(f"blobs restored: {n}")
        finally:
            engine.dispose()
        for m in extra:
            rel = Path(m.name.removeprefix(FILES))
            if files_to is None or rel.is_absolute() or ".." in rel.parts:
                continue
            dest = files_to / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                f = tar.extractfile(m)
                assert f is not None
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(f, out)
    return manifest
