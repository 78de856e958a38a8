"""Encryption at rest of secrets that must be read back (TOTP seeds): Fernet (AES-128-CBC with
HMAC-SHA256, from the ``cryptography`` package) under a list of keys, MultiFernet-style: the
first key encrypts, every key decrypts, so keys can be rotated by putting a new one first and
re-encrypting (``rewrite``). Values stored before encryption was introduced (clear base32 TOTP
seeds) are recognised and still read; ``needs_rewrite`` says a stored value should be replaced.
"""

from __future__ import annotations

import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_CLEAR_BASE32 = re.compile(r"[A-Z2-7]+=*")  # a TOTP seed stored in clear (before 0008)


class SecretKeyError(ValueError):
    """A stored secret that none of the keys decrypts (a key was removed too early)."""


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one secret key is needed")
        self._primary = Fernet(keys[0])
        self._all = MultiFernet([Fernet(k) for k in keys])

    @staticmethod
    def is_clear(stored: str) -> bool:
        return _CLEAR_BASE32.fullmatch(stored) is not None

    def encrypt(self, secret: str) -> str:
        return self._all.encrypt(secret.encode()).decode()

    def decrypt(self, stored: str) -> str:
        if self.is_clear(stored):
            return stored
        try:
            return self._all.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise SecretKeyError("no configured secret key decrypts this value") from None

    def needs_rewrite(self, stored: str) -> bool:
        """Whether ``stored`` is in clear or encrypted under another key than the first."""
        if self.is_clear(stored):
            return True
        try:
            self._primary.decrypt(stored.encode())
        except InvalidToken:
            return True
        return False

    def rewrite(self, stored: str) -> str:
        """``stored`` encrypted under the first key."""
        return self.encrypt(self.decrypt(stored))
