"""Storage for SMART authorization: clients, users, one-time codes, tokens, launch contexts and
used client-assertion ids. Secrets are stored only as hashes (sha256 of random tokens, argon2 of
passwords — hashed by the caller), except TOTP seeds, which must be read back: those are
encrypted with the store's ``SecretBox`` (``resources.auth.secret_box``) on the way in and decrypted
on the way out. Every statement is SQLAlchemy Core with bound parameters."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from resources.auth.secret_box import SecretBox, SecretKeyError
from resources.auth.token_lookup import PgTokenLookup, SqlTokenLookup, TokenLookup
from resources.storage.schema import Document, UtcDateTime, metadata

log = logging.getLogger("hearth.auth")

auth_client = sa.Table(
    "auth_client",
    metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # public | confidential-symmetric | confidential-asymmetric
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("secret_hash", sa.String(64)),
    sa.Column("jwks", Document),
    sa.Column("redirect_uris", Document, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),  # the most this client may ask for
    sa.Column("created", UtcDateTime(), nullable=False),
)

auth_user = sa.Table(
    "auth_user",
    metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("fhir_user", sa.String(200)),  # Patient/1, Practitioner/7, RelatedPerson/3
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("totp_secret", sa.String(512)),  # Fernet token (clear base32 before 0008)
    sa.Column("totp_last_step", sa.BigInteger),  # the last accepted TOTP step (no replay)
    sa.Column("recovery_codes", Document, nullable=False),  # sha256 hex of unused codes
    sa.Column("failed_count", sa.Integer, nullable=False),
    sa.Column("locked_until", UtcDateTime()),
    sa.Column("created", UtcDateTime(), nullable=False),
    # 0013: a deactivated account cannot sign in and its tokens are revoked; the last good login
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("last_sign_in", UtcDateTime()),
)

auth_code = sa.Table(
    "auth_code",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("context", Document, nullable=False),  # patient, encounter, fhirUser, nonce
    sa.Column("expires", UtcDateTime(), nullable=False),
    sa.Column("used", sa.Boolean, nullable=False),
)

auth_token = sa.Table(
    "auth_token",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # access | refresh
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128)),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("context", Document, nullable=False),
    sa.Column("audience", sa.Text, nullable=False),
    sa.Column("expires", UtcDateTime(), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False),
    sa.Column("grant_id", sa.String(64), nullable=False),  # the tokens one grant issued
    sa.Column("created", UtcDateTime(), nullable=False),
)

auth_launch = sa.Table(
    "auth_launch",
    metadata,
    sa.Column("launch_hash", sa.String(64), primary_key=True),
    sa.Column("context", Document, nullable=False),
    sa.Column("expires", UtcDateTime(), nullable=False),
)

auth_jti = sa.Table(
    "auth_jti",
    metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("jti", sa.String(200), primary_key=True),
    sa.Column("expires", UtcDateTime(), nullable=False),
)


TOKEN_LOOKUP = sa.select(
    auth_token.c.kind,
    auth_token.c.client_id,
    auth_token.c.username,
    auth_token.c.scope,
    auth_token.c.context,
    auth_token.c.audience,
    auth_token.c.expires,
    auth_token.c.revoked,
    auth_token.c.grant_id,
).where(auth_token.c.token_hash == sa.bindparam("token_hash"))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRow:
    kind: str
    client_id: str
    username: str | None
    scope: str
    context: dict
    audience: str
    expires: datetime
    revoked: bool
    grant_id: str


class AuthStore:
    """The authorization tables on ``engine``; each method is one short transaction. Bearer-token
    lookups, which every FHIR request makes, go through ``lookup`` (``resources.auth.token_lookup``;
    by default SQLAlchemy on ``engine``; ``serving`` gives PostgreSQL its raw psycopg pool)."""

    def __init__(
        self, engine: sa.Engine, lookup: TokenLookup | None = None, box: SecretBox | None = None
    ) -> None:
        self.engine = engine
        self.lookup = lookup or SqlTokenLookup(engine, TOKEN_LOOKUP)
        self.box = box  # without one, TOTP seeds can be neither written nor read back

    @classmethod
    def serving(
        cls,
        engine: sa.Engine,
        box: SecretBox | None = None,
        *,
        lookup_size: int = 4,
        wait: float = 30.0,
    ) -> AuthStore:
        """The store of a serving process: on PostgreSQL, token lookups run prepared on raw
        psycopg connections of their own (``PgTokenLookup``, at most ``lookup_size``, waiting
        ``wait`` seconds for a free one); ``close()`` closes them."""
        if engine.dialect.name == "postgresql":
            lookup = PgTokenLookup(engine, TOKEN_LOOKUP, size=lookup_size, wait=wait)
            return cls(engine, lookup, box)
        return cls(engine, box=box)

    def _seal(self, secret: str) -> str:
        if self.box is None:
            raise RuntimeError("this store has no secret key: it cannot store a TOTP secret")
        return self.box.encrypt(secret)

    def _open(self, row: dict, *, rewrite: bool = False) -> dict:
        """``row`` with its TOTP seed decrypted (as stored when the store has no key). With
        ``rewrite``, a seed still in clear or under an older key is re-encrypted in place."""
        stored = row.get("totp_secret")
        if not stored or self.box is None:
            return row
        try:
            secret = self.box.decrypt(stored)
        except SecretKeyError:
            # No configured key opens it: the account keeps its second factor, which no code
            # can pass until the key is back in HEARTH_SECRET_KEYS.
            log.error(
                "the TOTP secret of user %s cannot be decrypted with any secret key",
                row["username"],
            )
            return {**row, "totp_unreadable": True}
        if rewrite and self.box.needs_rewrite(stored):
            self._replace_secret(row["username"], stored, self.box.rewrite(stored))
        return {**row, "totp_secret": secret}

    def _replace_secret(self, username: str, old: str, new: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(auth_user)
                .where(auth_user.c.username == username, auth_user.c.totp_secret == old)
                .values(totp_secret=new)
            )
        return done.rowcount == 1

    def rewrite_secrets(self, *, only_clear: bool = False) -> int:
        """Encrypt every TOTP seed still in clear and (unless ``only_clear``) re-encrypt those
        under an older key with the first key; the number of rows rewritten. Safe to run from
        several processes at once (each row is replaced only if unchanged meanwhile)."""
        if self.box is None:
            raise RuntimeError("this store has no secret key")
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(auth_user.c.username, auth_user.c.totp_secret).where(
                    auth_user.c.totp_secret.is_not(None)
                )
            ).all()
        done = 0
        for username, stored in rows:
            todo = self.box.is_clear(stored) if only_clear else self.box.needs_rewrite(stored)
            if todo and self._replace_secret(username, stored, self.box.rewrite(stored)):
                done += 1
        return done

    def close(self) -> None:
        """Close the token lookup's own connections, if it has any (not ``engine``)."""
        self.lookup.close()

    # -- clients ------------------------------------------------------------------------------
    def add_client(self, **row: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(auth_client).values(**row))

    def client(self, client_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(auth_client).where(auth_client.c.client_id == client_id)
            ).first()
        return dict(row._mapping) if row else None

    def clients(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(auth_client).order_by(auth_client.c.created)).all()
        return [dict(r._mapping) for r in rows]

    # -- users --------------------------------------------------------------------------------
    def add_user(self, **row: object) -> None:
        if row.get("totp_secret"):
            row["totp_secret"] = self._seal(str(row["totp_secret"]))
        with self.engine.begin() as conn:
            conn.execute(sa.insert(auth_user).values(**row))

    def user(self, username: str) -> dict | None:
        """The user's row, its TOTP seed decrypted (and re-encrypted under the first key when
        it was stored in clear or under an older key)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(auth_user).where(auth_user.c.username == username)).first()
        return self._open(dict(row._mapping), rewrite=True) if row else None

    def email_taken(self, email: str) -> bool:
        """Whether an account has ``email`` as its user name or its e-mail address (any case)."""
        wanted = email.lower()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(auth_user.c.username)
                .where(
                    sa.or_(
                        sa.func.lower(auth_user.c.username) == wanted,
                        sa.func.lower(auth_user.c.email) == wanted,
                    )
                )
                .limit(1)
            ).first()
        return row is not None

    def users(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(auth_user).order_by(auth_user.c.username)).all()
        return [self._open(dict(r._mapping)) for r in rows]

    def update_user(self, username: str, **values: object) -> None:
        """Set columns as given (raw: TOTP seeds go through ``add_user`` / ``enrol_totp``)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(auth_user).where(auth_user.c.username == username).values(**values)
            )

    def set_active(self, username: str, active: bool) -> bool:
        """Deactivate or reactivate an account; False when it is unknown. Deactivating revokes
        every token issued to the account in the same transaction (and refused sign-ins and
        refreshes check the flag), so the account loses access at once."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(auth_user).where(auth_user.c.username == username).values(active=active)
            )
            if done.rowcount == 1 and not active:
                conn.execute(
                    sa.update(auth_token)
                    .where(auth_token.c.username == username, auth_token.c.revoked.is_(False))
                    .values(revoked=True)
                )
        return done.rowcount == 1

    def still_active(self, username: str) -> bool:
        """Whether the account exists and is active, read under a row lock (PostgreSQL ``FOR
        UPDATE``; SQLite's writers are serial): called after a token was stored, it waits for a
        deactivation in flight, so that either the deactivation sees the new token (and revokes
        it) or this read sees the deactivation (and the caller revokes it)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(auth_user.c.active)
                .where(auth_user.c.username == username)
                .with_for_update()
            ).first()
        return bool(row and row[0])

    def revoke_user_tokens(self, username: str) -> int:
        """Revoke every unrevoked token of ``username``; the number revoked."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(auth_token)
                .where(auth_token.c.username == username, auth_token.c.revoked.is_(False))
                .values(revoked=True)
            )
        return done.rowcount

    def replace_totp(self, username: str, secret: str | None, codes: list[str]) -> bool:
        """Replace the account's second factor (a new seed, or none) and its recovery codes, and
        forget the last used step; False when the account is unknown."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(auth_user)
                .where(auth_user.c.username == username)
                .values(
                    totp_secret=self._seal(secret) if secret else None,
                    totp_last_step=None,
                    recovery_codes=codes,
                )
            )
        return done.rowcount == 1

    def begin_attempt(
        self, username: str, now: datetime, limit: int, locks: list[datetime]
    ) -> int | None:
        """Count a login attempt before its password is checked, atomically (one ``UPDATE ...
        SET failed_count = failed_count + 1 ... RETURNING``: concurrent attempts each get their
        own number, none is lost). None when the account is unknown or locked at ``now``. The
        attempt that brings the count to ``limit`` or more locks the account in the same
        statement, until ``locks[n - limit]`` (the last one beyond), so no later attempt is
        checked before then; a good login clears count and lock (``update_user``)."""
        n = auth_user.c.failed_count + 1
        until = sa.case(
            *((n == limit + i, sa.literal(t, UtcDateTime())) for i, t in enumerate(locks)),
            else_=sa.literal(locks[-1], UtcDateTime()),
        )
        stmt = (
            sa.update(auth_user)
            .where(
                auth_user.c.username == username,
                sa.or_(auth_user.c.locked_until.is_(None), auth_user.c.locked_until <= now),
            )
            .values(
                failed_count=n,
                locked_until=sa.case((n >= limit, until), else_=auth_user.c.locked_until),
            )
            .returning(auth_user.c.failed_count)
        )
        with self.engine.begin() as conn:
            row = conn.execute(stmt).first()
        return row[0] if row else None

    def enrol_totp(self, username: str, secret: str, last_step: int, codes: list[str]) -> bool:
        """Turn TOTP on (once: False when the user has it already), with fresh recovery codes;
        ``last_step`` marks the code used to confirm as spent."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(auth_user)
                .where(auth_user.c.username == username, auth_user.c.totp_secret.is_(None))
                .values(
                    totp_secret=self._seal(secret), totp_last_step=last_step, recovery_codes=codes
                )
            )
        return done.rowcount == 1

    def accept_totp_step(self, username: str, step: int) -> bool:
        """Record ``step`` as used; False when it (or a later one) was used already (replay)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(auth_user)
                .where(
                    auth_user.c.username == username,
                    sa.or_(auth_user.c.totp_last_step.is_(None), auth_user.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
        return done.rowcount == 1

    def use_recovery_code(self, username: str, code_hash: str) -> bool:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(auth_user.c.recovery_codes)
                .where(auth_user.c.username == username)
                .with_for_update()
            ).first()
            if row is None or code_hash not in row[0]:
                return False
            left = [c for c in row[0] if c != code_hash]
            conn.execute(
                sa.update(auth_user)
                .where(auth_user.c.username == username)
                .values(recovery_codes=left)
            )
        return True

    # -- authorization codes ------------------------------------------------------------------
    def add_code(self, code: str, **row: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(auth_code).values(code_hash=digest(code), used=False, **row))

    def take_code(self, code: str) -> tuple[dict | None, bool]:
        """(the code's row, whether this call consumed it); a code is consumed exactly once."""
        h = digest(code)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(auth_code).where(auth_code.c.code_hash == h)).first()
            if row is None:
                return None, False
            done = conn.execute(
                sa.update(auth_code)
                .where(auth_code.c.code_hash == h, auth_code.c.used.is_(False))
                .values(used=True)
            )
        return dict(row._mapping), done.rowcount == 1

    # -- tokens -------------------------------------------------------------------------------
    def add_token(self, token: str, **row: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(auth_token).values(token_hash=digest(token), revoked=False, **row)
            )

    def token(self, token: str) -> TokenRow | None:
        """One primary-key lookup, never cached (revocation takes effect at once): it runs on
        every FHIR request."""
        row = self.lookup(digest(token))
        return TokenRow(*row) if row else None

    def revoke_grant(self, grant_id: str) -> None:
        """Revoke every token one grant issued (a refresh token and its access tokens)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(auth_token).where(auth_token.c.grant_id == grant_id).values(revoked=True)
            )

    def revoke(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(auth_token)
                .where(auth_token.c.token_hash == digest(token))
                .values(revoked=True)
            )

    # -- EHR launch contexts and client-assertion replay -------------------------------------
    def add_launch(self, launch: str, context: dict, expires: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(auth_launch).values(
                    launch_hash=digest(launch), context=context, expires=expires
                )
            )

    def launch(self, launch: str) -> tuple[dict, datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(auth_launch.c.context, auth_launch.c.expires).where(
                    auth_launch.c.launch_hash == digest(launch)
                )
            ).first()
        return (row[0], row[1]) if row else None

    def claim_jti(self, client_id: str, jti: str, expires: datetime) -> bool:
        """False when this client already used ``jti`` (a replayed assertion)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(auth_jti).values(client_id=client_id, jti=jti, expires=expires)
                )
        except IntegrityError:
            return False
        return True
