"""Elects the one process that runs the DICOM and MLLP listeners: one worker of a multi-worker
``hearth serve`` on SQLite, one process of all the nodes sharing a PostgreSQL database.

Every candidate runs an :class:`Election` over a lock:

- :class:`FileLock` (SQLite): an exclusive ``flock`` on a file under the data directory, which
  the operating system releases when its holder exits, however it exits. One machine only.
- ``resources.storage.advisory.SessionLock`` (PostgreSQL): a session-level advisory lock held on
  a connection of its own; the lock goes with the session when the holder dies (or its machine
  vanishes: TCP keepalives), so it works across machines.

The first candidate to take the lock starts the listeners; the others keep trying every ``poll``
seconds, so when the holder dies another one takes the ports over within seconds. The holder
asks every ``poll`` seconds whether it still holds the lock (a PostgreSQL connection can be
lost without the process dying): if not, it stops its listeners and campaigns again. Listener
threads start after the fork, in the worker, never in the thread-free process gunicorn forks
from.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

log = logging.getLogger("hearth.listeners")


class Lock(Protocol):
    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def release(self) -> None: ...


class FileLock:
    """An exclusive ``flock`` on ``path`` (created 0600); released when the process exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._holding = False

    def try_acquire(self) -> bool:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._holding = True
        return True

    def held(self) -> bool:
        return self._holding  # a file lock is not lost while its descriptor is open

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
        self._holding = False


class Election:
    """Runs ``start`` (which returns a stop function) while this process holds ``lock``."""

    def __init__(
        self, lock: Lock, start: Callable[[], Callable[[], None]], *, poll: float = 0.5
    ) -> None:
        self.lock = lock
        self._start = start
        self._poll = poll
        self._done = threading.Event()
        self._stop_listeners: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="listener-election", daemon=True)

    @property
    def leading(self) -> bool:
        """Whether this process runs the listeners now."""
        return self._stop_listeners is not None

    def begin(self) -> Election:
        """Campaign once here (a lone process that wins serves its listeners from the start),
        then in the background."""
        self._step()
        self._thread.start()
        return self

    def _step(self) -> float:
        """One turn of the campaign; returns how long to wait before the next."""
        if self._stop_listeners is not None:
            if self.lock.held():
                return self._poll
            log.warning("process %d lost the listener lock; stopping its listeners", os.getpid())
            self._stop()
            return self._poll
        try:
            if not self.lock.held() and not self.lock.try_acquire():
                return self._poll
        except sa.exc.DBAPIError:
            log.warning("listener election: the database does not answer; retrying")
            return max(self._poll, 2.0)
        try:
            self._stop_listeners = self._start()
        except OSError:
            log.exception("process %d could not start the listeners; retrying", os.getpid())
            return 5.0
        log.info("worker %d runs the DICOM / MLLP listeners", os.getpid())
        return self._poll

    def _run(self) -> None:
        while not self._done.is_set():
            self._done.wait(self._step())

    def _stop(self) -> None:
        if self._stop_listeners is not None:
            self._stop_listeners()
            self._stop_listeners = None

    def end(self) -> None:
        """Stop the listeners (if this process runs them) and give up the lock."""
        self._done.set()
        self._thread.join(timeout=10)
        self._stop()
        self.lock.release()
