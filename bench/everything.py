"""``Patient/[id]/$everything`` speed: a whole patient record, paged, next to the baseline in the
same run on the same server and data — the same record fetched the way a client without
``$everything`` does it: one Patient-compartment search per resource type
(``GET /fhir/Patient/[id]/[type]?_count=1000``, following ``next`` links), plus the read of the
Patient.

    .venv/bin/python bench/everything.py [--patients 5] [--count 1000] [--backend postgresql|sqlite]

Starts `hearth serve` on a throwaway database and loads ``--patients`` Synthea patient
transaction Bundles (../shared/synthea) through ``POST /fhir``. Both ways must return the same
members; ``$everything`` also returns the resources they refer to (includes), counted apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bulk_export import synthea  # noqa: E402
from bench.harness import database, hearth  # noqa: E402
from resources.search.compartments import compartment_params  # noqa: E402
from resources.validation import resource_types  # noqa: E402


def _pages(c: httpx.Client, url: str, params: dict) -> tuple[set[str], int]:
    matches: set[str] = set()
    included = 0
    r = c.get(url, params=params)
    while True:
        assert r.status_code == 200, r.text[:2000]
        bundle = r.json()
        for e in bundle.get("entry", []):
            mode = e["search"]["mode"]
            if mode == "match":
                matches.add(f"{e['resource']['resourceType']}/{e['resource']['id']}")
            elif mode == "include":
                included += 1
        nxt = [x["url"] for x in bundle.get("link", []) if x["relation"] == "next"]
        if not nxt:
            return matches, included
        r = c.get(nxt[0])


def everything(c: httpx.Client, pid: str, count: int) -> tuple[set[str], int, float]:
    start = time.perf_counter()
    matches, included = _pages(c, f"/Patient/{pid}/$everything", {"_count": str(count)})
    return matches, included, time.perf_counter() - start


def per_type(c: httpx.Client, pid: str, types: list[str], count: int) -> tuple[set[str], float]:
    start = time.perf_counter()
    r = c.get(f"/Patient/{pid}")
    assert r.status_code == 200, r.text
    found = {f"Patient/{pid}"}
    for res_type in types:
        matches, _ = _pages(c, f"/Patient/{pid}/{res_type}", {"_count": str(count)})
        found |= matches
    return found, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=5)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    # AuditEvent is the audit log's (admin only), which $everything leaves out (docs/search.md)
    compartment = sorted(
        t for t in resource_types() if compartment_params("Patient", t) and t != "AuditEvent"
    )
    with database(args.backend) as url, hearth(url) as server:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=300) as c:
            for bundle in synthea(args.patients):
                r = c.post("", json=bundle, headers={"Prefer": "return=minimal"})
                assert r.status_code == 200, r.text[:2000]
            pids = [
                e["resource"]["id"]
                for e in c.get("/Patient", params={"_count": "1000"}).json()["entry"]
            ]
            everything(c, pids[0], args.count)  # warm: connections, caches
            n_every = n_incl = n_base = 0
            t_every = t_base = 0.0
            for pid in pids:
                got, included, t = everything(c, pid, args.count)
                want, tb = per_type(c, pid, compartment, args.count)
                assert got == want, (pid, sorted(got ^ want)[:10])
                n_every, n_incl, t_every = n_every + len(got), n_incl + included, t_every + t
                n_base, t_base = n_base + len(want), t_base + tb
    print(
        f"Patient/[id]/$everything on {args.backend}: {len(pids)} Synthea patients, "
        f"{n_every} compartment members (+{n_incl} referenced resources), _count={args.count}"
    )
    print(
        f"  baseline: read + {len(compartment)} compartment searches per patient  "
        f"{n_base / t_base:8.0f} resources/s  {1000 * t_base / len(pids):7.0f} ms a record"
    )
    print(
        f"  $everything (members and includes)                      "
        f"{n_every / t_every:8.0f} resources/s  {1000 * t_every / len(pids):7.0f} ms a record  "
        f"({t_base / t_every:.1f}x faster)"
    )


if __name__ == "__main__":
    main()
