"""Elects the one worker process of a multi-worker ``hearth serve`` that runs the DICOM and MLLP
listeners: whichever holds an exclusive lock on a file under the data directory.

Every worker runs an :class:`Election`; the first to take the lock starts the listeners, the
others keep trying every ``poll`` seconds. The operating system releases the lock when its holder
exits, however it exits, so when gunicorn replaces a dead worker another worker (or the new one)
takes over the ports within ``poll`` seconds. Listener threads start after the fork, in the worker,
never in the thread-free process gunicorn forks from.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("hearth.listeners")


class Election:
    """Runs ``start`` (which returns a stop function) while this process holds ``lock_path``."""

    def __init__(
        self, lock_path: Path, start: Callable[[], Callable[[], None]], *, poll: float = 0.5
    ) -> None:
        self.lock_path = lock_path
        self._start = start
        self._poll = poll
        self._done = threading.Event()
        self._fd: int | None = None
        self._stop_listeners: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="listener-election", daemon=True)

    @property
    def leading(self) -> bool:
        """Whether this process runs the listeners now."""
        return self._stop_listeners is not None

    def begin(self) -> Election:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._fd is not None
        while not self._done.is_set():
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._done.wait(self._poll)
                continue
            break
        else:
            return
        while not self._done.is_set():
            try:
                self._stop_listeners = self._start()
            except OSError:
                log.exception("worker %d could not start the listeners; retrying", os.getpid())
                self._done.wait(5.0)
                continue
            log.info("worker %d runs the DICOM / MLLP listeners", os.getpid())
            return

    def end(self) -> None:
        """Stop the listeners (if this process runs them) and give up the lock."""
        self._done.set()
        self._thread.join(timeout=10)
        if self._stop_listeners is not None:
            self._stop_listeners()
            self._stop_listeners = None
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
