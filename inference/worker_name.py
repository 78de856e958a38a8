"""A name for this process's worker, unique across machines: host, process id and thread."""

from __future__ import annotations

import os
import socket
import threading


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
