"""Two checkouts of Hearth side by side over HTTP on PostgreSQL, interleaved in one run: the
before/after of a change, both meeting the same machine load.

    PYTHONPATH=. .venv/bin/python bench/trees.py OLD_TREE NEW_TREE [--ops read create]
        [--concurrency 1 8 32] [--seconds 5] [--rounds 2] [--workers 1]

Starts ``hearth serve --workers N`` from each tree (its own code, the same interpreter) on a
throwaway PostgreSQL database of its own, creates the same number of patients in each, then for
each round, concurrency and operation runs the phase on OLD, then on NEW (alternating which goes
first each round). Prints, per phase, req/s, p50/p95 latency and the server's CPU milliseconds per
request (the server process and its workers; PostgreSQL's own CPU is not in it), and NEW/OLD of
the medians over the rounds, with the machine's load average. ``--old-env`` / ``--new-env``
give each server its own ``HEARTH_*`` settings (the same tree twice compares two settings).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.crud import HEADERS, cpu_s, http_phase, pct, wait_up  # noqa: E402
from tests.servers import (  # noqa: E402
    PG_ADMIN,
    create_pg_database,
    drop_pg_database,
    free_port,
)


def sessions(db: str) -> int:
    """Connections PostgreSQL has accepted to ``db`` so far (``pg_stat_database.sessions``,
    flushed within a second): its change over a phase is the pool churn."""
    time.sleep(1.1)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute(
            "select sessions from pg_stat_database where datname = %s", (db,)
        ).fetchone()
    return int(row[0]) if row else 0


def start(
    tree: str, url: str, workers: int, extra: dict[str, str]
) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": tree,
        "PYTHONDONTWRITEBYTECODE": "1",
        "HEARTH_DATABASE_URL": url,
        "HEARTH_PORT": str(port),
        "HEARTH_BASE_URL": f"http://127.0.0.1:{port}",
        "HEARTH_WORKERS": str(workers),
        "HEARTH_LOG_LEVEL": "warning",
        "HEARTH_DICOM_ENABLED": "false",
        **extra,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "serve"],
        env=env,
        cwd=tree,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    cid = f"bench-{port}"
    _hearth(tree, env, "clients", "create", "--name", cid, "--client-id", cid, "--kind",
            "confidential-symmetric", "--scope", "system/*.cruds")  # fmt: skip
    token = _hearth(tree, env, "token", "--client", cid, "--scope", "system/*.cruds").strip()
    return proc, base, f"Bearer {token}"


def _hearth(tree: str, env: dict[str, str], *args: str) -> str:
    """A ``hearth`` command run from ``tree`` (its own code, its own migrations and tokens), so
    trees from before and after a schema change each get the database they expect."""
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--ops", nargs="+", default=["read"], choices=["read", "create"])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--settle",
        type=float,
        default=20,
        help="seconds to wait after the warm-up, while "
        "each server compiles its validators in the background (not measured)",
    )
    ap.add_argument("--old-env", nargs="*", default=[], help="KEY=VALUE for OLD's server")
    ap.add_argument("--new-env", nargs="*", default=[], help="KEY=VALUE for NEW's server")
    args = ap.parse_args()
    trees = {"old": str(Path(args.old).resolve()), "new": str(Path(args.new).resolve())}
    envs = {
        "old": dict(kv.split("=", 1) for kv in args.old_env),
        "new": dict(kv.split("=", 1) for kv in args.new_env),
    }
    dbs: list[str] = []
    procs: dict[str, subprocess.Popen] = {}
    try:
        servers: dict[str, tuple[str, str]] = {}
        db_of: dict[str, str] = {}
        for label, tree in trees.items():
            name, url = create_pg_database()
            dbs.append(name)
            db_of[label] = name
            _hearth(
                tree,
                {**os.environ, "PYTHONPATH": tree, "HEARTH_DATABASE_URL": url},
                "db",
                "upgrade",
            )
            proc, base, auth = start(tree, url, args.workers, envs[label])
            procs[label] = proc
            servers[label] = (base, auth)
        ids: dict[str, list[str]] = {}
        for label, (base, auth) in servers.items():
            wait_up(base + "/metadata")
            HEADERS["Authorization"] = auth
            _, _, made = asyncio.run(http_phase(base, 4, 3, "create", []))
            ids[label] = made
            asyncio.run(http_phase(base, 4, 2, "read", made))  # warm-up
        time.sleep(args.settle)
        load = os.getloadavg()
        print(
            f"# {args.old} (old) vs {args.new} (new): hearth serve --workers {args.workers}, "
            f"PostgreSQL, {args.seconds:.0f} s per phase, {args.rounds} rounds, "
            f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        if args.old_env or args.new_env:
            print(f"# old env {args.old_env}, new env {args.new_env}")
        print(
            f"{'op':<7}{'conc':>5} {'tree':>5} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'cpu ms':>7} {'new conns':>9}"
        )
        results: dict[tuple[str, int, str], list[tuple[float, float, float, float]]] = {}
        for rnd in range(args.rounds):
            order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
            for conc in args.concurrency:
                for op in args.ops:
                    for label in order:
                        base, auth = servers[label]
                        HEADERS["Authorization"] = auth
                        s0 = sessions(db_of[label])
                        c0 = cpu_s(procs[label].pid)
                        rate, lat, made = asyncio.run(
                            http_phase(base, conc, args.seconds, op, ids[label])
                        )
                        cpu = (cpu_s(procs[label].pid) - c0) / len(lat) * 1e3
                        ids[label] += made
                        row = (rate, pct(lat, 50), pct(lat, 95), cpu)
                        results.setdefault((op, conc, label), []).append(row)
                        print(
                            f"{op:<7}{conc:>5} {label:>5} {rate:8.0f} {row[1]:7.1f} "
                            f"{row[2]:7.1f} {cpu:7.2f} {sessions(db_of[label]) - s0:9d}",
                            flush=True,
                        )
        load = os.getloadavg()
        print(f"# medians over the rounds (load average at the end {load[0]:.2f} {load[1]:.2f})")
        print(
            f"{'op':<7}{'conc':>5} {'old/s':>7} {'new/s':>7} {'new/old':>8} "
            f"{'old p50':>8} {'new p50':>8} {'old cpu':>8} {'new cpu':>8}"
        )
        for conc in args.concurrency:
            for op in args.ops:
                old = [statistics.median(x) for x in zip(*results[(op, conc, "old")], strict=True)]
                new = [statistics.median(x) for x in zip(*results[(op, conc, "new")], strict=True)]
                print(
                    f"{op:<7}{conc:>5} {old[0]:7.0f} {new[0]:7.0f} {new[0] / old[0]:8.2f} "
                    f"{old[1]:8.1f} {new[1]:8.1f} {old[3]:8.2f} {new[3]:8.2f}"
                )
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.wait(30)
        for name in dbs:
            drop_pg_database(name)


if __name__ == "__main__":
    main()
