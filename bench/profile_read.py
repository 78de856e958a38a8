"""Profile a running ``hearth serve --workers 1`` on PostgreSQL under a read-by-id load.

    PYTHONPATH=. .venv/bin/python bench/profile_read.py [--seconds 20] [--concurrency 8]
        [--op read|create] [--out /tmp/hearth-read.svg]

Starts the server on a throwaway PostgreSQL database, creates patients, then drives ``GET
/Patient/{id}`` (or ``POST /Patient``) from ``--concurrency`` clients while ``py-spy record``
samples the server process (a dev tool: ``pip install py-spy``). Writes a flame graph (SVG) and
, and prints the top frames by own and total samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.crud import HEADERS, cpu_s, http_phase, wait_up  # noqa: E402
from resources.storage.migrate import upgrade  # noqa: E402
from tests.servers import (  # noqa: E402
    create_pg_database,
    drop_pg_database,
    free_port,
    system_token,
)


def top_frames(collapsed: Path, n: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        frames = stack.split(";")
        samples += k
        own[frames[-1]] += k
        for f in set(frames):
            total[f] += k
    print(f"# {samples} samples")
    print("## own time")
    for f, k in own.most_common(n):
        print(f"{100 * k / samples:5.1f}%  {f}")
    print("## total time (frame on the stack)")
    for f, k in total.most_common(n * 2):
        print(f"{100 * k / samples:5.1f}%  {f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--op", choices=("read", "create"), default="read")
    ap.add_argument("--out", default="/tmp/hearth-profile.txt")
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    args = ap.parse_args()
    name, url = create_pg_database()
    proc = None
    try:
        upgrade(url)
        port = free_port()
        env = {
            **os.environ,
            "HEARTH_DATABASE_URL": url,
            "HEARTH_PORT": str(port),
            "HEARTH_BASE_URL": f"http://127.0.0.1:{port}",
            "HEARTH_WORKERS": "1",
            "HEARTH_LOG_LEVEL": "warning",
            "HEARTH_DICOM_ENABLED": "false",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server.cli", "serve"], env=env, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}/fhir"
        HEADERS["Authorization"] = f"Bearer {system_token(url, f'http://127.0.0.1:{port}')}"
        wait_up(base + "/metadata")
        _, _, ids = asyncio.run(http_phase(base, 4, 3, "create", []))
        asyncio.run(http_phase(base, 4, 2, args.op, ids))  # warm-up
        collapsed = Path(args.out)
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(proc.pid),
                "--subprocesses",
                "-r",
                str(args.rate),
                "-f",
                "raw",
                "-o",
                str(collapsed),
                "-d",
                str(int(args.seconds) + 1),
                "--nonblocking",
                "--gil",  # only the thread holding the GIL: where Python spends CPU
            ]
        )
        time.sleep(1)
        c0 = cpu_s(proc.pid)
        rate, lat, _ = asyncio.run(http_phase(base, args.concurrency, args.seconds, args.op, ids))
        cpu = (cpu_s(proc.pid) - c0) / len(lat) * 1e3
        spy.wait()
        load = os.getloadavg()
        lat.sort()
        print(
            f"# {args.op} c={args.concurrency}: {rate:.0f} req/s, p50 "
            f"{lat[len(lat) // 2] * 1e3:.1f} ms, server CPU {cpu:.2f} ms/request "
            f"(with py-spy attached), load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        top_frames(collapsed)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        drop_pg_database(name)


if __name__ == "__main__":
    main()
