"""Bearer-token lookups on PostgreSQL: through SQLAlchemy on a pool without the pre-ping round
trip, and (as the server runs them) prepared on raw psycopg connections. Either way a connection
the server dropped is retried once on a fresh one, so a restart or an idle timeout never turns
into a failed request; a revocation is seen by the next lookup; a forked child never touches its
parent's connections."""

from __future__ import annotations

import os
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from resources.auth.store import TOKEN_LOOKUP, AuthStore
from resources.auth.token_lookup import PgTokenLookup, SqlTokenLookup
from resources.storage.db import create_engine
from resources.storage.migrate import upgrade
from resources.storage.store import utcnow
from tests.servers import PG_ADMIN, create_pg_database, drop_pg_database


@pytest.fixture
def pg():  # type: ignore[no-untyped-def]
    name, url = create_pg_database()
    upgrade(url)
    engine = create_engine(url)
    try:
        yield name, url, engine
    finally:
        engine.dispose()
        drop_pg_database(name)


def _add(store: AuthStore, token: str, **extra: object) -> None:
    now = utcnow()
    row: dict = dict(
        kind="access",
        client_id="c",
        username=None,
        scope="system/*.rs",
        context={"patient": "p1"},
        audience="http://x/fhir",
        expires=now + timedelta(hours=1),
        grant_id="g",
        created=now,
    )
    store.add_token(token, **{**row, **extra})


def _drop_all(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:  # the server drops them all
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    assert killed and killed[0] >= 1


def test_lookup_survives_dropped_connections(pg):  # type: ignore[no-untyped-def]
    name, url, engine = pg
    lookup = create_engine(url, pool_size=2, pre_ping=False)
    store = AuthStore(engine, SqlTokenLookup(lookup, TOKEN_LOOKUP, owned=True))
    try:
        invalidated: list[object] = []
        sa.event.listen(lookup, "invalidate", lambda *args: invalidated.append(args))
        _add(store, "tok-1")
        assert store.token("tok-1").client_id == "c"  # type: ignore[union-attr]
        _drop_all(name)
        assert store.token("tok-1").client_id == "c"  # type: ignore[union-attr]
        assert invalidated  # the dropped connection was met, and the lookup retried
        assert store.token("unknown") is None
    finally:
        store.close()


def test_raw_lookup_survives_dropped_connections(pg):  # type: ignore[no-untyped-def]
    name, _url, engine = pg
    store = AuthStore.serving(engine)
    assert isinstance(store.lookup, PgTokenLookup)
    try:
        _add(store, "tok-1")
        # several idle connections, all of which the server then drops
        held = [store.lookup._take() for _ in range(3)]
        for conn in held:
            store.lookup._give(conn)
        assert store.token("tok-1").client_id == "c"  # type: ignore[union-attr]
        before = list(store.lookup._idle)
        assert len(before) == 3
        _drop_all(name)
        assert store.token("tok-1").client_id == "c"  # type: ignore[union-attr]
        assert all(c.closed for c in before)  # the dropped ones were met and closed
        after = store.lookup._idle
        assert len(after) == 1 and all(c is not b for c in after for b in before)
        assert store.token("unknown") is None
    finally:
        store.close()


def test_raw_lookup_matches_sqlalchemy_and_sees_revocation(pg):  # type: ignore[no-untyped-def]
    _name, _url, engine = pg
    store = AuthStore.serving(engine)
    plain = AuthStore(engine)
    try:
        _add(store, "tok-2", username="ada", context={"patient": "p9", "role": "doctor"})
        raw = store.token("tok-2")
        assert raw is not None and raw == plain.token("tok-2")
        assert raw.expires.tzinfo is not None and raw.expires.utcoffset() == timedelta(0)
        assert raw.context == {"patient": "p9", "role": "doctor"}
        for _ in range(6):  # past psycopg's prepare threshold either way
            assert store.token("tok-2") == raw
        plain.revoke("tok-2")
        assert store.token("tok-2").revoked  # type: ignore[union-attr]
        # an error that is not a dropped connection is not retried, and the connection is kept
        # out of the pool only if it is no longer usable
        with pytest.raises(psycopg.Error):
            store.lookup("a\x00b")
        assert store.token("tok-2") is not None
    finally:
        store.close()


def test_raw_lookup_closes_and_refuses_after_close(pg):  # type: ignore[no-untyped-def]
    _name, _url, engine = pg
    store = AuthStore.serving(engine)
    _add(store, "tok-3")
    assert store.token("tok-3") is not None
    conns = list(store.lookup._idle)  # type: ignore[attr-defined]
    assert conns
    store.close()
    assert all(c.closed for c in conns)
    with pytest.raises(RuntimeError):
        store.token("tok-3")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_raw_lookup_in_forked_child_uses_its_own_connections(pg):  # type: ignore[no-untyped-def]
    _name, _url, engine = pg
    store = AuthStore.serving(engine)
    try:
        _add(store, "tok-4")
        assert store.token("tok-4") is not None
        parent_conn = store.lookup._idle[0]  # type: ignore[attr-defined]
        parent_pid = parent_conn.info.backend_pid
        pid = os.fork()
        if pid == 0:  # the child: empty pool, a connection of its own, parent's untouched
            code = 1
            try:
                lookup = store.lookup
                ok = not lookup._idle and store.token("tok-4") is not None  # type: ignore[attr-defined]
                mine = lookup._idle[0].info.backend_pid  # type: ignore[attr-defined]
                code = 0 if ok and mine != parent_pid else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert store.token("tok-4") is not None  # the parent's connection still works
        assert store.lookup._idle[0].info.backend_pid == parent_pid  # type: ignore[attr-defined]
    finally:
        store.close()


def test_sqlite_keeps_the_sqlalchemy_lookup(tmp_path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        store = AuthStore.serving(engine)
        assert isinstance(store.lookup, SqlTokenLookup)
        _add(store, "tok-5")
        row = store.token("tok-5")
        assert row is not None and row.context == {"patient": "p1"}
        store.revoke("tok-5")
        assert store.token("tok-5").revoked  # type: ignore[union-attr]
        store.close()
    finally:
        engine.dispose()
