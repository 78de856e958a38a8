"""Terminology speed on PostgreSQL: token ``:in`` / ``:below`` next to the same codes written out
as a plain ``code=system|a,system|b,...`` search in the same run, and ``$expand`` of the shipped
R4 content.

    .venv/bin/python bench/terminology.py [--observations 20000] [--codes 2000] [--runs 50]

Loads a CodeSystem with a two-level hierarchy of ``--codes`` codes (40 groups), a ValueSet with an
``is-a`` filter on one group, and ``--observations`` Observations coded across the system into a
throwaway PostgreSQL database through the repository's batch write path. Prints p50 / p95 of
compile + execute for each query and its baseline, the ratio, and ``$expand`` timings (the first
call loads the shipped bundle).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.runtime.terminology import finder, prober  # noqa: E402
from resources.search import SearchEngine  # noqa: E402
from resources.storage.db import create_engine  # noqa: E402
from resources.storage.migrate import upgrade  # noqa: E402
from resources.storage.repository import Repository  # noqa: E402
from terminology import Terminology  # noqa: E402
from terminology.builtin import Builtin  # noqa: E402
from terminology.expand import ExpandParams  # noqa: E402
from tests.servers import create_pg_database, drop_pg_database  # noqa: E402

SYSTEM = "urn:bench:findings"
VS = "urn:bench:vs:group-7"
GROUPS = 40


def code_system(n_codes: int) -> dict:
    per = max(1, n_codes // GROUPS)
    groups = [
        {
            "code": f"g{g}",
            "display": f"Group {g}",
            "concept": [{"code": f"g{g}-c{c}", "display": f"Code {c} of {g}"} for c in range(per)],
        }
        for g in range(GROUPS)
    ]
    return {
        "resourceType": "CodeSystem",
        "url": SYSTEM,
        "status": "active",
        "content": "complete",
        "concept": groups,
    }


def timed(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> str:
    p95 = sorted(ms)[max(0, int(len(ms) * 0.95) - 1)]
    return f"p50 {statistics.median(ms):7.2f} ms  p95 {p95:7.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--observations", type=int, default=20_000)
    ap.add_argument("--codes", type=int, default=2_000)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()

    name, url = create_pg_database()
    try:
        upgrade(url)
        engine = create_engine(url)
        search = SearchEngine()
        repo = Repository(engine, search)
        service = Terminology(finder(repo), probe=prober(repo))  # as the app builds it
        search.terminology = service
        cs = code_system(args.codes)
        codes = [c["code"] for g in cs["concept"] for c in g["concept"]]
        vs = {
            "resourceType": "ValueSet",
            "url": VS,
            "status": "active",
            "compose": {
                "include": [
                    {
                        "system": SYSTEM,
                        "filter": [{"property": "concept", "op": "is-a", "value": "g7"}],
                    }
                ]
            },
        }
        repo.run(lambda u: u.create_many([(str(uuid.uuid4()), cs), (str(uuid.uuid4()), vs)]))
        t0 = time.perf_counter()
        batch = 1000
        for start in range(0, args.observations, batch):
            items = [
                (
                    str(uuid.uuid4()),
                    {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": SYSTEM, "code": codes[i % len(codes)]}]},
                    },
                )
                for i in range(start, min(start + batch, args.observations))
            ]
            repo.run(lambda u, items=items: u.create_many(items))
        load_s = time.perf_counter() - t0
        print(
            f"loaded {args.observations} Observations over {len(codes)} codes in {load_s:.1f} s "
            f"(PostgreSQL, {GROUPS} groups)"
        )

        def count(query: list[tuple[str, str]]) -> int:
            def fn(u):  # type: ignore[no-untyped-def]
                return len(u.conn.execute(search.compile("Observation", query).select).all())

            return repo.read(fn)

        group7 = ["g7", *[c for c in codes if c.startswith("g7-")]]
        explicit = ",".join(f"{SYSTEM}|{c}" for c in group7)
        cases = [
            ("code:in=<is-a g7>", [("code:in", VS)], [("code", explicit)]),
            ("code:below=g7", [("code:below", f"{SYSTEM}|g7")], [("code", explicit)]),
        ]
        print(f"{'query':24} {'terminology':32} {'baseline (explicit code list)':32} ratio")
        for label, query, baseline in cases:
            n, m = count(query), count(baseline)
            assert n == m, (label, n, m)
            t = timed(lambda q=query: count(q), args.runs)
            b = timed(lambda q=baseline: count(q), args.runs)
            ratio = statistics.median(t) / statistics.median(b)
            print(f"{label:24} {summary(t):32} {summary(b):32} {ratio:4.2f}x  ({n} matches)")

        fresh = Terminology(builtin=Builtin())  # its own copy: the first call loads the bundle
        t0 = time.perf_counter()
        gender = fresh.resolver.require(
            "ValueSet", "http://hl7.org/fhir/ValueSet/administrative-gender"
        )
        fresh.expander.expand(gender, ExpandParams())
        first = (time.perf_counter() - t0) * 1000
        again = timed(lambda: fresh.expander.expand(gender, ExpandParams()), args.runs)
        all_types = fresh.resolver.require("ValueSet", "http://hl7.org/fhir/ValueSet/all-types")
        big = timed(lambda: fresh.expander.expand(all_types, ExpandParams()), args.runs)
        print(
            f"$expand administrative-gender: first call (loads the R4 bundle) {first:.0f} ms; then {summary(again)}"
        )
        print(f"$expand all-types ({len(fresh.expander.codes(all_types))} codes): {summary(big)}")
        engine.dispose()
    finally:
        drop_pg_database(name)


if __name__ == "__main__":
    main()
