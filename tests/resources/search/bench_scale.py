"""Search at scale on PostgreSQL: bulk-index Synthea resources (replicated with fresh ids up to a
target count), then time typical queries. Not a pytest module; run by hand:

    .venv/bin/python -m tests.resources.search.bench_scale \\
        --url postgresql://postgres@127.0.0.1:5432/hearth_search_bench --target 1000000

``--load 0`` reuses what an earlier run loaded. Reports resources/s for indexing (extraction
alone, and with the inserts) and p50/p95 per query.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from resources.db import create_engine
from resources.schema import metadata, resource
from resources.search import SearchEngine
from tests.shared import shared_path


def synthea_bundles() -> Iterator[list[dict]]:
    path = shared_path("synthea", "r4_transaction_bundles_all617.tar.gz")
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                f = tar.extractfile(member)
                assert f is not None
                yield orjson.loads(f.read())["entry"]


def _rewrite(node: object, refs: dict[str, str]) -> object:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in refs:
                out[k] = refs[v]
            else:
                out[k] = _rewrite(v, refs)
        return out
    if isinstance(node, list):
        return [_rewrite(v, refs) for v in node]
    return node


def resources(target: int) -> Iterator[dict]:
    """Synthea resources, urn:uuid references made relative, replicated with a ``-rN`` id
    suffix until ``target`` distinct resources have been produced."""
    seen: set[tuple[str, str]] = set()
    made = 0
    replica = 0
    while made < target:
        for entries in synthea_bundles():
            suffix = f"-r{replica}"
            refs = {
                e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}{suffix}"
                for e in entries
                if "fullUrl" in e
            }
            for e in entries:
                res = _rewrite(e["resource"], refs)
                assert isinstance(res, dict)
                res["id"] = res["id"] + suffix
                key = (res["resourceType"], res["id"])
                if key in seen:
                    continue
                seen.add(key)
                yield res
                made += 1
                if made >= target:
                    return
        replica += 1


def load(engine: sa.Engine, search: SearchEngine, target: int, batch: int) -> None:
    """Insert ``target`` resources in transactions of ``batch``: the resource rows, then
    ``search.index`` (extraction and index rows), as the repository does."""
    now = datetime.now(UTC)
    buf: list[dict] = []
    n = 0

    def flush() -> None:
        with engine.begin() as conn:
            pks = (
                conn.execute(
                    sa.insert(resource).returning(resource.c.pk, sort_by_parameter_order=True),
                    [
                        {
                            "res_type": r["resourceType"],
                            "res_id": r["id"],
                            "version": 1,
                            "last_updated": now,
                            "deleted": False,
                            "content": r,
                        }
                        for r in buf
                    ],
                )
                .scalars()
                .all()
            )
            search.index(conn, zip(pks, buf, strict=True))
        buf.clear()

    with engine.connect() as conn:  # the pool's connection: the one the batches will use
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    pg_cpu0, py_cpu0 = _pg_cpu(backend), time.process_time()
    start = time.perf_counter()
    prep = 0.0  # CPU spent reading and rewriting the Synthea bundles (not indexing)
    source = resources(target)
    while True:
        t0 = time.process_time()
        res = next(source, None)
        prep += time.process_time() - t0
        if res is None:
            break
        buf.append(res)
        n += 1
        if len(buf) >= batch:
            flush()
            if n % (batch * 50) == 0:
                el = time.perf_counter() - start
                print(f"  {n} loaded, {n / el:.0f} res/s", flush=True)
    if buf:
        flush()
    total = time.perf_counter() - start
    py_cpu, pg_cpu = time.process_time() - py_cpu0 - prep, _pg_cpu(backend) - pg_cpu0
    print(f"loaded {n} resources in {total:.0f} s: {n / total:.0f} res/s wall clock")
    if pg_cpu >= 0:
        print(
            f"CPU: loader {py_cpu:.0f} s ({n / py_cpu:.0f} res/s; test data preparation "
            f"excluded, {prep:.0f} s), PostgreSQL backend "
            f"{pg_cpu:.0f} s ({n / pg_cpu:.0f} res/s); one loader on otherwise idle cores: "
            f"{n / (py_cpu + pg_cpu):.0f} res/s"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _pg_cpu(pid: int) -> float:
    """CPU seconds of a PostgreSQL backend on this machine (-1 where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return -1.0


def extraction_speed(search: SearchEngine, count: int) -> None:
    """``rows_for`` alone, in CPU time (not disturbed by other work on the machine)."""
    sample = list(resources(count))
    for allow_fast in (True, False):
        indexer = (
            search.indexer
            if allow_fast
            else type(search.indexer)(search.registry, allow_fast=False)
        )
        t0 = time.process_time()
        rows = sum(len(indexer.rows_for(r)) for r in sample)
        dt = time.process_time() - t0
        label = "fast path" if allow_fast else "fhirpathpy only"
        print(
            f"extraction ({label}): {len(sample) / dt:.0f} res/s per CPU second, "
            f"{rows / len(sample):.1f} rows/res"
        )


def sample(conn: sa.Connection, sql: str, k: int) -> list:
    rows = conn.exec_driver_sql(sql).all()
    random.Random(7).shuffle(rows)
    return [r[0] for r in rows[:k]]


def bench_queries(engine: sa.Engine, search: SearchEngine, runs: int) -> None:
    with engine.connect() as conn:
        pats = sample(conn, "SELECT res_id FROM resource WHERE res_type='Patient' LIMIT 5000", runs)
        docs = conn.execute(
            sa.select(resource.c.content).where(
                resource.c.res_type == "Patient", resource.c.res_id.in_(pats)
            )
        ).scalars()
        fams, mrns = [], []
        for doc in docs:
            fams.append(doc["name"][0]["family"])
            mrns.append(f"{doc['identifier'][1]['system']}|{doc['identifier'][1]['value']}")
        queries: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
            "Patient?_id": [("Patient", [("_id", p)]) for p in pats],
            "Patient?family (prefix)": [("Patient", [("family", f[:4])]) for f in fams],
            "Patient?name:exact": [("Patient", [("name:exact", f)]) for f in fams],
            "Patient?identifier=sys|value": [("Patient", [("identifier", m)]) for m in mrns],
            "Patient?gender&birthdate=ge": [
                (
                    "Patient",
                    [
                        ("gender", "female"),
                        ("birthdate", f"ge{1930 + i % 80}-01-01"),
                        ("_count", "20"),
                    ],
                )
                for i in range(runs)
            ],
            "Observation?patient": [("Observation", [("patient", f"Patient/{p}")]) for p in pats],
            "Observation?patient&code": [
                ("Observation", [("patient", f"Patient/{p}"), ("code", "http://loinc.org|8302-2")])
                for p in pats
            ],
            "Observation?code&date (page of 20)": [
                (
                    "Observation",
                    [
                        ("code", "http://loinc.org|8302-2"),
                        ("date", f"ge{2000 + i % 19}-01-01"),
                        ("_count", "20"),
                    ],
                )
                for i in range(runs)
            ],
            "Observation?code&value-quantity (page of 20)": [
                (
                    "Observation",
                    [
                        ("code", "http://loinc.org|8302-2"),
                        ("value-quantity", f"gt{150 + i % 40}"),
                        ("_count", "20"),
                    ],
                )
                for i in range(runs)
            ],
            "Observation?subject.name (chain)": [
                (
                    "Observation",
                    [("subject:Patient.name:exact", f), ("code", "http://loinc.org|8302-2")],
                )
                for f in fams
            ],
            "Patient?_has:Observation (page of 20)": [
                (
                    "Patient",
                    [
                        ("_has:Observation:patient:code", "http://loinc.org|8302-2"),
                        ("family", f[:3]),
                        ("_count", "20"),
                    ],
                )
                for f in fams
            ],
            "Encounter?patient&_sort=-date": [
                ("Encounter", [("patient", p), ("_sort", "-date"), ("_count", "20")]) for p in pats
            ],
            "Observation?patient&_sort=-date (page of 20)": [
                ("Observation", [("patient", p), ("_sort", "-date"), ("_count", "20")])
                for p in pats
            ],
            "Observation?code&_sort=-date (page, broad)": [
                ("Observation", [("code", c), ("_sort", "-date"), ("_count", "20")])
                for c in ("http://loinc.org|8302-2", "http://loinc.org|29463-7") * (runs // 2)
            ],
            "Observation?code&_sort=_lastUpdated (page, broad)": [
                ("Observation", [("code", c), ("_sort", "_lastUpdated"), ("_count", "20")])
                for c in ("http://loinc.org|8302-2", "http://loinc.org|29463-7") * (runs // 2)
            ],
        }
        queries["Observation?code (count, _total=accurate)"] = [
            ("Observation", [("code", c), ("_summary", "count")])
            for c in ("http://loinc.org|8302-2", "http://loinc.org|29463-7") * (runs // 2)
        ]
        for label, items in queries.items():
            times = []
            counts = []
            for res_type, query in items:
                compiled = search.compile(res_type, query)
                stmt = compiled.select
                if compiled.result.sort:
                    stmt = search.ordered(res_type, stmt, compiled.result.sort)
                if compiled.result.count:
                    stmt = stmt.limit(compiled.result.count)
                if compiled.result.summary == "count":
                    stmt = sa.select(sa.func.count()).select_from(stmt.subquery())
                t0 = time.perf_counter()
                got = conn.execute(stmt).all()
                times.append((time.perf_counter() - t0) * 1000)
                counts.append(len(got))
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(
                f"{label:45s} p50 {statistics.median(times):7.1f} ms  p95 {p95:7.1f} ms  "
                f"rows/query {statistics.mean(counts):8.1f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--target", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--load", type=int, default=1)
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    engine = create_engine(args.url, pool_size=1)
    search = SearchEngine()
    extraction_speed(search, 5000)
    if args.load:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        load(engine, search, args.target, args.batch)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(resource)).scalar_one()
    print(f"{total} resources in the database")
    bench_queries(engine, search, args.runs)


if __name__ == "__main__":
    main()
