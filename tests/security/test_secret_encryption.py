"""TOTP seeds are encrypted at rest (Fernet, ``HEARTH_SECRET_KEYS`` or a generated key file),
on both databases: logins with TOTP work over HTTP, seeds stored in clear before the upgrade
still work and get encrypted, and keys rotate (`hearth users rotate-secrets`)."""

from __future__ import annotations

import stat

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from resources.auth.store import auth_user
from resources.storage.db import create_engine
from tests.conftest import BACKENDS
from tests.fhir_server.auth.smart import code_of, login, make_client, make_user, pkce, store_of
from tests.fhir_server.test_cli import hearth
from tests.servers import database_url, start_server


def _stored(server, username: str) -> str:  # type: ignore[no-untyped-def]
    """The raw column, as the database holds it."""
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(auth_user.c.totp_secret).where(auth_user.c.username == username)
            ).scalar_one()
    finally:
        engine.dispose()


def _patient(server) -> str:  # type: ignore[no-untyped-def]
    resp = httpx.post(
        f"{server.fhir}/Patient",
        json={"resourceType": "Patient"},
        headers=server.headers,
        timeout=60,
    )
    assert resp.status_code == 201
    return resp.json()["id"]


def _logs_in(server, client_id: str, user) -> bool:  # type: ignore[no-untyped-def]
    _, challenge = pkce()
    resp = login(server, client_id, user, "patient/*.rs", challenge=challenge)
    if resp.status_code == 303:
        code_of(resp)
        return True
    return False


def test_seeds_are_encrypted_with_a_generated_key_file(server):
    key_file = server.settings.data_dir / "keys" / "secret-keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = Fernet(key_file.read_text().split()[0].encode())
    user = make_user(server, "patient", f"Patient/{_patient(server)}", totp=True)
    seed = user.totp.secret  # type: ignore[union-attr]
    stored = _stored(server, user.username)
    assert seed not in stored
    assert key.decrypt(stored.encode()).decode() == seed
    client_id, _ = make_client(server, "public", "patient/*.rs")
    assert _logs_in(server, client_id, user)


def test_seeds_stored_in_clear_before_the_upgrade_still_work(server):
    user = make_user(server, "patient", f"Patient/{_patient(server)}", totp=True)
    seed = user.totp.secret  # type: ignore[union-attr]
    store = store_of(server)
    try:
        store.update_user(user.username, totp_secret=seed)  # as 0005-0007 stored it
    finally:
        store.engine.dispose()
    assert _stored(server, user.username) == seed
    client_id, _ = make_client(server, "public", "patient/*.rs")
    assert _logs_in(server, client_id, user)
    stored = _stored(server, user.username)
    assert stored != seed and seed not in stored  # encrypted on that first read


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(request.param))
    yield request.param, url
    cleanup()


def test_keys_rotate_and_clear_seeds_are_encrypted_at_start(database):
    backend, url = database
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    first = start_server(backend, url, secret_keys=old)
    try:
        user = make_user(first, "patient", f"Patient/{_patient(first)}", totp=True)
        legacy = make_user(first, "patient", f"Patient/{_patient(first)}", totp=True)
        client_id, _ = make_client(first, "public", "patient/*.rs")
        assert Fernet(old).decrypt(_stored(first, user.username).encode())
    finally:
        first.stop()
    store = store_of(first)
    try:
        store.update_user(legacy.username, totp_secret=legacy.totp.secret)  # type: ignore[union-attr]
    finally:
        store.engine.dispose()

    # new key first, old one still listed: everything is re-encrypted with the new key
    env = {"HEARTH_DATABASE_URL": url, "HEARTH_SECRET_KEYS": f"{new},{old}"}
    out = hearth("users", "rotate-secrets", env=env)
    assert out.returncode == 0, out.stderr
    assert "2 secret(s) and 1 signing key(s)" in out.stdout
    for u in (user, legacy):
        stored = _stored(first, u.username)
        assert Fernet(new).decrypt(stored.encode()).decode() == u.totp.secret  # type: ignore[union-attr]
        with pytest.raises(InvalidToken):
            Fernet(old).decrypt(stored.encode())

    # the old key is gone: the server still signs these users in
    second = start_server(backend, url, secret_keys=new)
    try:
        assert _logs_in(second, client_id, user)
        # a seed written in clear (a row from before the upgrade) is encrypted when a server starts
        store = store_of(second)
        try:
            store.update_user(legacy.username, totp_secret=legacy.totp.secret)  # type: ignore[union-attr]
        finally:
            store.engine.dispose()
    finally:
        second.stop()
    third = start_server(backend, url, secret_keys=new)
    try:
        stored = _stored(third, legacy.username)
        assert Fernet(new).decrypt(stored.encode()).decode() == legacy.totp.secret  # type: ignore[union-attr]
        assert _logs_in(third, client_id, legacy)
    finally:
        third.stop()

    # a key list that cannot decrypt the rows is refused by the CLI, naming the problem
    other = Fernet.generate_key().decode()
    refused = hearth("users", "rotate-secrets", env={**env, "HEARTH_SECRET_KEYS": other})
    assert refused.returncode != 0 and "keep the old key" in refused.stderr


def test_a_bad_secret_key_setting_is_refused(tmp_path):
    out = hearth(
        "users",
        "rotate-secrets",
        env={
            "HEARTH_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "HEARTH_SECRET_KEYS": "not-a-key",
        },
    )
    assert out.returncode != 0 and "HEARTH_SECRET_KEYS" in out.stderr
