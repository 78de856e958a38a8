"""Listener failover: seconds from SIGKILL of the process running the DICOM / MLLP listeners to
the first C-ECHO answered again, across two nodes on one PostgreSQL database (the advisory-lock
election, docs/deployment.md), next to the baseline measured in the same run: the same handover
between two workers of one `hearth serve --workers 2` on SQLite (the file lock).

    .venv/bin/python bench/failover.py [--rounds 3]

The failover includes the survivor's retry interval (0.5 s), binding the port, and — for the
baseline — nothing of gunicorn's replacement of the dead worker (the other worker takes over).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, process  # noqa: E402
from tests.fhir_server.test_serve_workers import echo  # noqa: E402
from tests.servers import free_port  # noqa: E402

LEADS = re.compile(r"worker (\d+) runs the DICOM / MLLP listeners")


def node(dicom_port: int, workers: int) -> list[str]:
    """`hearth serve` with the DICOM listener on ``dicom_port`` (the same on every node)."""
    cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(free_port())]
    return cmd + ["--workers", str(workers), "--dicom-port", str(dicom_port)]


def wait(check, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.05)
    raise RuntimeError(f"timed out: {check}")


def leaders(logs: list[Path]) -> set[int]:
    """Every process that has led so far."""
    return {int(m) for log in logs for m in LEADS.findall(log.read_text())}


def measure(backend: str, nodes: int, workers: int) -> float:
    """One failover: start ``nodes`` × ``hearth serve --workers workers``, kill the leader."""
    secret = Fernet.generate_key().decode()
    dicom_port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="hearth-failover-"))
    with ExitStack() as stack:
        url = stack.enter_context(database(backend))
        logs = []
        for n in range(nodes):
            log = folder / f"node-{n}.log"
            env = {
                **os.environ,
                "HEARTH_DATABASE_URL": url,
                "HEARTH_DATA_DIR": str(folder / f"data-{n}"),
                "HEARTH_SECRET_KEYS": secret,
                "HEARTH_BASE_URL": "http://127.0.0.1",
            }
            cmd = node(dicom_port, workers)
            stack.enter_context(process(cmd, env, stdout=log.open("w")))
            logs.append(log)
        (first,) = wait(lambda: leaders(logs))
        wait(lambda: echo(dicom_port))
        time.sleep(1.0)  # let the others settle into their retry loop
        killed = time.monotonic()
        if nodes > 1:
            os.killpg(os.getpgid(first), signal.SIGKILL)  # the whole node
        else:
            os.kill(first, signal.SIGKILL)  # the leading worker
        wait(lambda: leaders(logs) - {first})
        wait(lambda: echo(dicom_port))
        return time.monotonic() - killed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = [measure("sqlite", 1, 2) for _ in range(args.rounds)]
    cluster = [measure("postgresql", 2, 1) for _ in range(args.rounds)]
    print(f"listener failover, {args.rounds} rounds (seconds from SIGKILL to a C-ECHO answered):")
    print(
        f"  two nodes on PostgreSQL (advisory lock): median {statistics.median(cluster):.2f}"
        f"  max {max(cluster):.2f}"
    )
    print(
        f"  baseline, two workers of one node on SQLite (file lock): median "
        f"{statistics.median(base):.2f}  max {max(base):.2f}"
    )


if __name__ == "__main__":
    main()
