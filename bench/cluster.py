"""Throughput per added API node: the production shape on this machine (tests/cluster/shape.py:
API nodes in network namespaces behind HAProxy, a PostgreSQL primary and streaming replica),
the same workload through a frontend that sends everything to one node and through one that
balances over two, interleaved round by round in one run.

    sudo .venv/bin/python bench/cluster.py [--rounds 3] [--seconds 10] [--clients 8]

Workloads: ``create`` (POST Patient: the primary's write path), ``read`` (GET Patient/[id]),
``search`` (GET Patient?identifier=…, served by the replica). Prints requests per second for one
node and two, their ratio, and the load average — on a 2-core machine every node, PostgreSQL
(primary and replica) and the clients share the same two cores, so the ratio measures the
machine's ceiling as much as Hearth's scaling; run it on a machine per node for the real figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster.shape import cluster  # noqa: E402


def run(root: str, headers: dict, kind: str, clients: int, seconds: float, ids: list[str]) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(headers=headers, timeout=30) as c:
            n = 0
            while time.monotonic() < stop:
                n += 1
                if kind == "create":
                    r = c.post(f"{root}/fhir/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:bench", "value": f"{k}-{n}-{uuid.uuid4().hex[:6]}"}]})  # fmt: skip
                    ok = r.status_code == 201
                elif kind == "read":
                    r = c.get(f"{root}/fhir/Patient/{ids[n % len(ids)]}")
                    ok = r.status_code == 200
                else:
                    r = c.get(f"{root}/fhir/Patient", params={"identifier": f"urn:bench|seed-{n % 200}"})  # fmt: skip
                    ok = r.status_code == 200
                if ok:
                    done[k] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    with cluster(Path(tempfile.mkdtemp(prefix="hearth-bench-cluster-")), worker_args=("worker", "--no-ai")) as c:  # fmt: skip
        h = c["headers"]
        with httpx.Client(headers=h, timeout=30) as seed:
            ids = [seed.post(f"{c['root']}/fhir/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:bench", "value": f"seed-{i}"}]}).json()["id"] for i in range(200)]  # fmt: skip
        c["pair"].wait_replayed()
        results: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for kind in ("create", "read", "search"):
                for label, root in (("1 node", c["root_one"]), ("2 nodes", c["root"])):
                    rate = run(root, h, kind, args.clients, args.seconds, ids)
                    results.setdefault((kind, label), []).append(rate)
                    print(f"round {r + 1} {kind:6} {label:7} {rate:8.1f} req/s  (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
        print(f"\n{args.clients} clients, {args.seconds:.0f} s per cell, median of {args.rounds} rounds; {os.cpu_count()} CPUs")  # fmt: skip
        print("| workload | 1 node req/s | 2 nodes req/s | 2 / 1 |")
        print("|---|---|---|---|")
        for kind in ("create", "read", "search"):
            one = statistics.median(results[(kind, "1 node")])
            two = statistics.median(results[(kind, "2 nodes")])
            print(f"| {kind} | {one:.0f} | {two:.0f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
