"""The blob store, each backend (a folder; the database on SQLite and PostgreSQL): all-or-nothing
puts, replacing, streaming in and out, prefixes, stamps, keys that cannot escape the store."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from resources.errors import NotFound
from resources.storage import blobs as b
from resources.storage.db import create_engine
from tests.servers import database_url


@pytest.fixture(scope="module", params=["files", "sqlite", "postgresql"])
def store(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"blobs-{request.param}")
    if request.param == "files":
        yield b.FileBlobs(tmp)
        return
    url, cleanup = database_url(request.param, tmp)
    engine = create_engine(url)
    yield b.DatabaseBlobs(engine)
    engine.dispose()
    cleanup()  # type: ignore[operator]


def key(name: str, request) -> str:  # type: ignore[no-untyped-def]
    return f"t/{request.node.name.replace('[', '-').replace(']', '')}/{name}"


def test_put_open_replace_delete(store, request):
    k = key("one.bin", request)
    assert not store.exists(k) and store.stamp(k) is None
    with pytest.raises(NotFound):
        store.open(k)
    assert store.put(k, b"first") == 5
    stamp = store.stamp(k)
    with store.open(k) as f:
        assert f.read() == b"first"
    assert store.put(k, [b"sec", b"", b"ond!"]) == 7
    assert store.stamp(k) not in (None, stamp)
    with store.open(k) as f:
        assert f.read() == b"second!"
        f.seek(3)  # seekable: pydicom seeks
        assert f.read(3) == b"ond"
    assert store.delete(k) and not store.exists(k) and not store.delete(k)


def test_empty_and_large_blobs_stream(store, request):
    empty, large = key("empty", request), key("large", request)
    assert store.put(empty, b"") == 0
    with store.open(empty) as f:
        assert f.read() == b""
    piece = bytes(range(256)) * 4099  # not a multiple of the database chunk size
    n = 3 * b.CHUNK // len(piece) + 2
    assert store.put(large, (piece for _ in range(n))) == n * len(piece)
    with store.open(large) as f:
        for _ in range(n):
            assert f.read(len(piece)) == piece
        assert f.read() == b""


def test_a_failed_put_leaves_the_previous_content(store, request):
    k = key("kept", request)
    store.put(k, b"old")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"x" * (b.CHUNK + 10)  # the database backend has written a chunk already
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        store.put(k, chunks())
    with store.open(k) as f:
        assert f.read() == b"old"
    if isinstance(store, b.DatabaseBlobs):  # no orphan chunks of the failed write
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sa.func.count()).select_from(b.blob_chunk).where(b.blob_chunk.c.key == k)
            ).scalar_one()
        assert rows == 1
    else:
        assert [p.name for p in store.path(k).parent.iterdir()] == ["kept"]


def test_prefixes_list_and_delete_only_their_own(store, request):
    base = key("exports", request)
    for name in ("job1/a.ndjson", "job1/b.ndjson", "job10/a.ndjson", "job2/a.ndjson"):
        store.put(f"{base}/{name}", name.encode())
    assert store.keys(f"{base}/job1") == [f"{base}/job1/a.ndjson", f"{base}/job1/b.ndjson"]
    assert store.delete_prefix(f"{base}/job1") == 2
    assert store.keys(f"{base}/job1") == []
    assert store.keys(f"{base}/job10") == [f"{base}/job10/a.ndjson"]  # not under job1/
    assert store.exists(f"{base}/job2/a.ndjson")


@pytest.mark.parametrize(
    "bad", ["", "/abs", "a//b", "../x", "a/../b", "a/.hidden", "a\\b", "a/b c", "é", "x" * 513]
)
def test_bad_keys_are_refused(store, bad):
    with pytest.raises(ValueError):
        store.put(bad, b"x")
    with pytest.raises(ValueError):
        store.open(bad)


def test_concurrent_puts_of_one_key_leave_one_whole_blob(store, request):
    k = key("raced", request)
    bodies = [bytes([i]) * (b.CHUNK + 1000 * i) for i in range(1, 5)]
    errors: list[BaseException] = []

    def put(body: bytes) -> None:
        try:
            store.put(k, body)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(body,)) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with store.open(k) as f:
        assert f.read() in bodies


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_hearth_blobs_copy_moves_a_data_directory_into_the_database(tmp_path, backend):
    """`hearth blobs copy`, run as an operator runs it: every instance and export file of the
    data directory lands in the database (the ingest journal stays); a second run skips them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from resources.storage.instances import InstanceStore

    url, cleanup = database_url(backend, tmp_path)
    data = tmp_path / "data"
    store = InstanceStore(data)
    store.put("1.2.3.4", b"DICM" * 1000)
    store.put("1.2.3.5", b"")
    store.mark_pending("1.2.3", "1.2.3.4")
    b.FileBlobs(data).put("exports/job-1/Patient-1.ndjson", b'{"resourceType":"Patient"}\n')
    env = {**os.environ, "HEARTH_DATABASE_URL": url, "HEARTH_DATA_DIR": str(data)}
    hearth = str(Path(sys.executable).with_name("hearth"))
    try:
        first = subprocess.run([hearth, "blobs", "copy"], env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        assert "copied 3 blob(s)" in first.stdout
        engine = create_engine(url)
        try:
            db = b.DatabaseBlobs(engine)
            moved = InstanceStore(tmp_path / "elsewhere", db)
            assert moved.read("1.2.3.4") == b"DICM" * 1000 and moved.read("1.2.3.5") == b""
            assert db.keys("exports") == ["exports/job-1/Patient-1.ndjson"]
            assert db.keys("dicom/pending") == []
        finally:
            engine.dispose()
        again = subprocess.run([hearth, "blobs", "copy"], env=env, capture_output=True, text=True)
        assert again.returncode == 0 and "copied 0 blob(s)" in again.stdout, again.stdout
    finally:
        cleanup()  # type: ignore[operator]
