"""uvicorn's event loop and HTTP parser options, measured on the stack's own ceiling
(``bench/ceiling_app.py``: FastAPI doing one prepared point SELECT per read), interleaved in one
run on one PostgreSQL database.

    PYTHONPATH=. .venv/bin/python bench/uvicorn_options.py [--seconds 3] [--rounds 2]
        [--concurrency 1 8 32]

Starts the ceiling app once per option set — ``asyncio`` + ``h11`` (the pure-Python choice),
``asyncio`` + ``httptools``, ``uvloop`` + ``httptools`` (what uvicorn's ``auto`` picks when both
are installed, as they are with ``uvicorn[standard]``) — each one process, then drives
``GET /Patient/{id}`` on each in turn (the first alternating each round). Prints req/s, p50 and
the server's CPU milliseconds per request, with the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.crud import cpu_s, http_phase, pct, wait_up  # noqa: E402
from tests.servers import create_pg_database, drop_pg_database, free_port  # noqa: E402

OPTIONS = {
    "asyncio+h11": ("asyncio", "h11"),
    "asyncio+httptools": ("asyncio", "httptools"),
    "uvloop+httptools": ("uvloop", "httptools"),
}


def start(dsn: str, loop: str, http: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = (
        "import uvicorn; uvicorn.run('bench.ceiling_app:create_app', factory=True, "
        f"host='127.0.0.1', port={port}, workers=1, log_level='warning', access_log=False, "
        f"loop={loop!r}, http={http!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "CEILING_DSN": dsn, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()
    name, dsn = create_pg_database()
    procs: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create table ceiling_resource (id text primary key, content jsonb)")
        for label, (loop, http) in OPTIONS.items():
            procs[label] = start(dsn, loop, http)
        ids: list[str] = []
        for _, base in procs.values():
            wait_up(base + "/Patient/none")
        _, _, ids = asyncio.run(http_phase(next(iter(procs.values()))[1], 4, 2, "create", []))
        for _, base in procs.values():
            asyncio.run(http_phase(base, 4, 1, "read", ids))  # warm-up
        load = os.getloadavg()
        print(
            f"# bench/ceiling_app.py, one uvicorn process each, {args.seconds:.0f} s phases, "
            f"{args.rounds} rounds, {os.cpu_count()} cores, load average {load[0]:.2f} "
            f"{load[1]:.2f} {load[2]:.2f}"
        )
        print(f"{'options':<20}{'conc':>5} {'req/s':>8} {'p50 ms':>7} {'cpu ms':>7}")
        results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        labels = list(procs)
        for rnd in range(args.rounds):
            order = labels if rnd % 2 == 0 else labels[::-1]
            for conc in args.concurrency:
                for label in order:
                    proc, base = procs[label]
                    c0 = cpu_s(proc.pid)
                    rate, lat, _ = asyncio.run(http_phase(base, conc, args.seconds, "read", ids))
                    cpu = (cpu_s(proc.pid) - c0) / len(lat) * 1e3
                    results.setdefault((label, conc), []).append((rate, pct(lat, 50), cpu))
                    print(
                        f"{label:<20}{conc:>5} {rate:8.0f} {pct(lat, 50):7.1f} {cpu:7.3f}",
                        flush=True,
                    )
        load = os.getloadavg()
        print(f"# medians over the rounds (load average at the end {load[0]:.2f} {load[1]:.2f})")
        for conc in args.concurrency:
            for label in labels:
                rate, p50, cpu = (
                    statistics.median(x) for x in zip(*results[(label, conc)], strict=True)
                )
                print(f"{label:<20}{conc:>5} {rate:8.0f} {p50:7.1f} {cpu:7.3f}")
    finally:
        for proc, _ in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in procs.values():
            proc.wait(20)
        drop_pg_database(name)


if __name__ == "__main__":
    main()
