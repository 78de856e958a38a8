"""Checkpoints of the audit chain, kept outside the database.

The hash chain (``resources/audit/__init__.py``) shows an edited or removed row, but not the removal of the
newest rows, nor an edit of the last row whose hash is recomputed: what is left is a shorter,
whole chain. A checkpoint records the chain's head — ``{seq, hash of row seq, count of rows up to
it, time}`` — signed with Hearth's signing key (a JWS, ``fhir_server/auth/keys.py``), as one JSON
line appended to ``HEARTH_DATA_DIR/audit/checkpoints.jsonl`` and to
``HEARTH_AUDIT_CHECKPOINT_EXPORT`` when set (a file an auditor keeps, e.g. on another machine's
share). The server writes one every ``HEARTH_AUDIT_CHECKPOINT_SECONDS`` while the log grows and one
at shutdown; ``hearth audit checkpoint`` writes one on demand and prints it. ``hearth audit
verify`` checks each signature and that each checkpoint's row is still in the chain unchanged.
A database owner can rewrite the audit table and any other table, but not the copies already
written elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from joserfc.jwk import KeySet

from fhir_server.auth.keys import SigningKey, verify_document
from resources import audit

log = logging.getLogger("hearth.audit")
PURPOSE = "hearth-audit-checkpoint"


def default_file(data_dir: Path) -> Path:
    return data_dir / "audit" / "checkpoints.jsonl"


def make(engine: sa.Engine, key: SigningKey) -> dict | None:
    """A signed checkpoint of the chain's head as it is now (None while the log is empty)."""
    head = audit.head(engine)
    if head is None:
        return None
    claims = {
        "purpose": PURPOSE,
        "seq": head.seq,
        "hash": head.hash,
        "count": head.count,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # The readable fields are for people; only what the signature covers is trusted.
    return {**{k: v for k, v in claims.items() if k != "purpose"}, "jws": key.sign_document(claims)}


def append(line: dict, path: Path) -> None:
    """Append ``line`` to ``path`` as one JSON line (one write, opened O_APPEND, then fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class BadCheckpoint(Exception):
    def __init__(self, path: Path, line_no: int, reason: str) -> None:
        super().__init__(f"{path} line {line_no}: {reason}")


def read(path: Path, keys: KeySet) -> list[audit.Head]:
    """The checkpoints of ``path``, each signature checked against ``keys``; a line that is not a
    checkpoint, or whose signature does not verify, raises ``BadCheckpoint``."""
    heads = []
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                token = json.loads(text)["jws"]
            except (ValueError, KeyError, TypeError):
                raise BadCheckpoint(path, n, "not a checkpoint line") from None
            claims = verify_document(token, keys) if isinstance(token, str) else None
            if claims is None or claims.get("purpose") != PURPOSE:
                raise BadCheckpoint(path, n, "its signature does not verify with Hearth's key")
            try:
                heads.append(
                    audit.Head(int(claims["seq"]), str(claims["hash"]), int(claims["count"]))
                )
            except (KeyError, TypeError, ValueError):
                raise BadCheckpoint(path, n, "signed, but not a checkpoint") from None
    return heads


@dataclass
class Checkpointer:
    """Writes a checkpoint every ``interval`` seconds when the log has grown since the last one
    (0: only at ``stop``), to each of ``paths``, from a thread of its own."""

    engine: sa.Engine
    key: SigningKey
    paths: list[Path]
    interval: float

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the timer's write and the final one never interleave
        self._last: int | None = None
        self._thread: threading.Thread | None = None
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="audit-checkpoint", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def write(self) -> dict | None:
        with self._lock:
            return self._write()

    def _write(self) -> dict | None:
        try:
            line = make(self.engine, self.key)
            if line is None or line["seq"] == self._last:
                return None
            for path in self.paths:
                append(line, path)
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            log.error("audit checkpoint not written: %s", type(exc).__name__)
            return None
        self._last = line["seq"]
        log.info("audit checkpoint at event %d (%d events)", line["seq"], line["count"])
        return line

    def stop(self) -> None:
        """Stop the timer and write the final checkpoint (call after the audit writer drained)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.write()
