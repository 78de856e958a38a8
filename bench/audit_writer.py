"""The background audit writer's CPU per read record, two checkouts side by side.

    PYTHONPATH=. .venv/bin/python bench/audit_writer.py OLD_TREE NEW_TREE [--rate 300]
        [--seconds 4] [--rounds 2]

For each tree in turn (alternating which goes first each round), a child process with that tree
first on its path creates a throwaway PostgreSQL database, starts that tree's ``AuditWriter``
(the default 20 ms linger) and submits read events shaped as the server's (``rest_event``) at
``--rate`` per second for ``--seconds``, then flushes. It prints the process CPU per record
(the writer thread's batches and the submitting loop, which is the same in both trees) and the
records written, with the machine's load average; the chain is verified at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one(rate: float, seconds: float) -> None:
    # the tree under test from PYTHONPATH; this script's folder would shadow packages
    # (bench/workflow.py, bench/search.py)
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from fhir_server.auth.audit_events import rest_event
    from resources import audit
    from resources.storage.db import create_engine
    from resources.storage.migrate import upgrade
    from tests.servers import create_pg_database, drop_pg_database

    name, url = create_pg_database()
    try:
        upgrade(url)
        engine = create_engine(url, pool_size=4, max_overflow=0)
        writer = audit.AuditWriter(engine, linger=0.02)

        def event(i: int) -> dict:
            return rest_event(
                base="http://127.0.0.1/fhir",
                interaction="read",
                status=200,
                client_id="bench",
                username=None,
                fhir_user=None,
                patient=None,
                ip="127.0.0.1",
                what=[f"Patient/p{i}"],
            )

        for i in range(20):  # warm-up: statements prepared, index plans built
            writer.submit(event(i))
        writer.flush()
        cpu0, start, n = time.process_time(), time.monotonic(), 0
        while time.monotonic() - start < seconds:
            writer.submit(event(n))
            n += 1
            time.sleep(1 / rate)
        writer.flush()
        cpu = (time.process_time() - cpu0) / n * 1e3
        writer.close()
        checked, broken = audit.verify(engine)
        assert broken is None, broken
        engine.dispose()
        print(f"{cpu:.3f} {n}")
    finally:
        drop_pg_database(name)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("old", nargs="?")
    ap.add_argument("new", nargs="?")
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.rate, args.seconds)
        return
    trees = {"old": str(Path(args.old).resolve()), "new": str(Path(args.new).resolve())}
    load = os.getloadavg()
    print(
        f"# {args.old} (old) vs {args.new} (new): {args.rate:.0f} read records/s for "
        f"{args.seconds:.0f} s, {args.rounds} rounds, load average {load[0]:.2f} {load[1]:.2f}"
    )
    results: dict[str, list[float]] = {"old": [], "new": []}
    for rnd in range(args.rounds):
        for label in ["old", "new"] if rnd % 2 == 0 else ["new", "old"]:
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--rate", str(args.rate), "--seconds",
                 str(args.seconds)],
                env={**os.environ, "PYTHONPATH": trees[label]},
                cwd=trees[label],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()  # fmt: skip
            cpu, n = float(out[-2]), int(out[-1])
            results[label].append(cpu)
            print(f"{label}: {cpu:.3f} ms CPU per record ({n} records)", flush=True)
    old, new = (statistics.median(results[k]) for k in ("old", "new"))
    load = os.getloadavg()
    print(
        f"# medians: old {old:.3f}, new {new:.3f} ms per record, new/old {new / old:.2f} "
        f"(load average at the end {load[0]:.2f} {load[1]:.2f})"
    )


if __name__ == "__main__":
    main()
