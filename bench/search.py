"""Search at scale on PostgreSQL: load Synthea through Hearth's transaction path, then time the
issue's query mix through the code the HTTP search runs.

    make bench-search                       # or:
    .venv/bin/python bench/search.py [--target 1000000] [--workers 2] [--runs 200]
    .venv/bin/python bench/search.py --reuse  # (= --load 0) query the database loaded before

Load: the 617 Synthea transaction Bundles in ../shared/synthea are posted, replica after
replica, to ``resources.storage.transaction.process`` -- what ``POST [base]`` with a transaction Bundle
runs (fullUrl references rewritten to server-assigned ids, the plain creates through
``Unit.create_many``: validation, the resource and history rows, index extraction and index
rows, one database transaction per Bundle). Fresh ids come from the server; replicas > 0 also get
``-rN`` appended to each Patient identifier value so that identifier searches stay selective.
``--workers`` loader processes (default 2, as ``hearth serve`` runs 2 uvicorn workers) each post
their own Bundles, after an untimed warm-up (validating the resources of their first 11 Bundles
compiles the R4 JSON Schema validators of the types met, once per process). Not included: HTTP,
JSON parsing of the request body, auth and the audit record. Printed: wall clock; the CPU of the
loaders and of their PostgreSQL backends; and the CPU inside ``tx.process`` alone (the
transaction path without un-gzipping and parsing the test data). Baseline in the same run: raw
psycopg ``COPY`` of the same resources' JSON into a plain ``(id text primary key, content
jsonb)`` table in the same database, from one process.

Queries: each through ``resources.search.engine.run_search`` inside ``Repository.read`` -- the
function ``GET [base]/[type]?...`` calls -- then ``orjson.dumps`` of the Bundle, as the HTTP
response does, so a figure includes compiling the query, the SQL, reading the page's resources,
building the searchset Bundle and its JSON bytes (not HTTP), with the type filter a
``system/*.rs`` token gets and the stored JSON served as text (``raw``, as over HTTP). p50/p95
over ``--runs`` runs with parameter values drawn from the loaded data. Baseline in the same run:
the ``_revinclude`` page with every resource decoded and re-encoded (``raw`` off, as before).

``--fill N`` (with ``--reuse``): top the database up to N resources by writing replicas' resource,
history and index rows directly (no validation), for when the machine is too busy to load them
all through Hearth in the time at hand; it prints that it did, and its time is not a loader
figure. This is the one search benchmark (it replaces ``tests/resources/search/bench_scale.py``).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import random
import statistics
import sys
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson
import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resources.search import INDEX_TABLES, SearchEngine  # noqa: E402
from resources.search.engine import SearchRequest, Security, run_search  # noqa: E402
from resources.storage.db import create_engine  # noqa: E402
from resources.storage.migrate import upgrade  # noqa: E402
from resources.storage.repository import Repository  # noqa: E402
from resources.storage.schema import resource  # noqa: E402
from resources.validation import resource_types  # noqa: E402

SYNTHEA = ROOT.parent / "shared" / "synthea" / "r4_transaction_bundles_all617.tar.gz"
ADMIN = os.environ.get("HEARTH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE = "https://hearth.example/fhir"


def bench_url(name: str) -> str:
    return f"{ADMIN.rsplit('/', 1)[0]}/{name}"


def bundles(worker: int = 0, workers: int = 1) -> Iterator[tuple[int, bytes]]:
    """(index, raw JSON) of the Synthea Bundles this worker owns (index % workers == worker)."""
    with tarfile.open(SYNTHEA) as tar:
        n = 0
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                if n % workers == worker:
                    f = tar.extractfile(member)
                    assert f is not None
                    yield n, f.read()
                n += 1


def replica(raw: bytes, r: int) -> dict:
    """The Bundle as replica ``r``: Patient identifier values made unique per replica (ids and
    references are the server's business: every POST gets a fresh id)."""
    bundle = orjson.loads(raw)
    if r:
        for e in bundle["entry"]:
            res = e["resource"]
            if res["resourceType"] == "Patient":
                for ident in res.get("identifier", []):
                    if "value" in ident:
                        ident["value"] = f"{ident['value']}-r{r}"
    return bundle


# -- loading through Hearth -------------------------------------------------------------------
_repo: Repository | None = None


def _search_entry(unit, res_type, query, base):  # type: ignore[no-untyped-def]
    return run_search(unit, SearchRequest(res_type=res_type, query=query), base=base)


def _status_of(exc: Exception) -> int:
    return 400


def _pg_cpu(pid: int) -> float:
    """CPU seconds of a PostgreSQL backend on this machine (/proc/PID/stat utime + stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load_worker(
    url: str, worker: int, workers: int, target: int, counter, cpu, profile: str
) -> None:  # type: ignore[no-untyped-def]
    from resources.storage import transaction as tx
    from resources.validation import validate_resource
    from resources.validation.schema import schema

    engine = create_engine(url, pool_size=1)
    repo = Repository(engine, SearchEngine(base_urls=(BASE,)))
    with engine.connect() as conn:  # the pool's one connection: the one the Bundles will use
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    # Warm-up, not timed: compile the R4 JSON Schema validators of the types in the first
    # Bundles (once per process, ~10 s; what a server does in its first minutes).
    for n, (_, raw) in enumerate(bundles(worker, workers)):
        for e in orjson.loads(raw)["entry"]:
            validate_resource(e["resource"])
        if n == 10:
            break
    compiled = sum(schema().compile_seconds.values())
    cpu0, pg0 = time.process_time(), _pg_cpu(backend)
    in_tx = 0.0  # CPU inside tx.process: the transaction path without preparing the test data
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    r = 0
    while counter.value < target:
        for _, raw in bundles(worker, workers):
            if counter.value >= target:
                break
            bundle = replica(raw, r)
            t0 = time.process_time()
            tx.process(
                repo,
                bundle,
                base=BASE,
                search=_search_entry,
                status_of=_status_of,
                return_pref="minimal",
            )
            in_tx += time.process_time() - t0
            with counter.get_lock():
                counter.value += len(bundle["entry"])
        r += 1
    k = 4 * worker
    cpu[k] = time.process_time() - cpu0
    cpu[k + 1] = _pg_cpu(backend) - pg0
    cpu[k + 2] = in_tx
    cpu[k + 3] = sum(schema().compile_seconds.values()) - compiled
    if prof is not None:
        prof.disable()
        prof.dump_stats(f"{profile}.{worker}")


def _rewrite(node: object, refs: dict[str, str]) -> object:
    if isinstance(node, dict):
        return {
            k: refs.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, refs)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, refs) for v in node]
    return node


def _fill_worker(url: str, worker: int, workers: int, target: int, counter) -> None:  # type: ignore[no-untyped-def]
    """Top-up only (``--fill``): resource, history and index rows written directly, as
    ``create_many`` writes them but without validation or the transaction's processing."""
    from resources.storage.schema import resource_version
    from resources.storage.store import content_hash, stamp, utcnow

    engine = create_engine(url, pool_size=1)
    search = SearchEngine(base_urls=(BASE,))
    r = 1000 + worker  # replica numbers of their own: identifiers stay unique
    while counter.value < target:
        for _, raw in bundles(worker, workers):
            if counter.value >= target:
                break
            entries = replica(raw, r)["entry"]
            refs = {
                e["fullUrl"]: f"{e['resource']['resourceType']}/{uuid.uuid4()}" for e in entries
            }
            ts = utcnow()
            rows, contents = [], []
            for e in entries:
                body = _rewrite(e["resource"], refs)
                assert isinstance(body, dict)
                res_type, res_id = refs[e["fullUrl"]].split("/")
                content = stamp(body, res_id, 1, ts)
                contents.append(content)
                rows.append(
                    {
                        "res_type": res_type,
                        "res_id": res_id,
                        "version": 1,
                        "last_updated": ts,
                        "deleted": False,
                        "content": content,
                        "content_hash": content_hash({**body, "id": res_id}),
                    }
                )
            with engine.begin() as conn:
                stmt = sa.insert(resource).returning(resource.c.pk, sort_by_parameter_order=True)
                pks = conn.execute(stmt, rows).scalars().all()
                conn.execute(
                    sa.insert(resource_version),
                    [
                        {**row, "res_pk": pk, "method": "POST"}
                        for pk, row in zip(pks, rows, strict=True)
                    ],
                )
                search.index(conn, list(zip(pks, contents, strict=True)))
            with counter.get_lock():
                counter.value += len(entries)
        r += workers


def fill(url: str, target: int, workers: int) -> None:
    """Top up the database to ``target`` resources (not a measured figure; see ``--fill``)."""
    with psycopg.connect(url) as conn:
        have = conn.execute("SELECT count(*) FROM resource").fetchone()[0]
    ctx = mp.get_context("fork")
    counter = ctx.Value("q", have)
    procs = [
        ctx.Process(target=_fill_worker, args=(url, w, workers, target, counter))
        for w in range(workers)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"fill process failed with exit code {p.exitcode}")
    print(
        f"topped up from {have:,} to {counter.value:,} resources by direct writes "
        f"(no validation; not a loader figure) in {time.perf_counter() - start:,.0f} s"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def create_database(name: str) -> str:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = bench_url(name)
    upgrade(url)
    return url


@dataclass
class Loaded:
    """What a load did: resources, wall seconds, and CPU seconds of the loader processes (all,
    after the warm-up; inside ``tx.process`` only) and of their PostgreSQL backends; and the
    seconds spent compiling R4 JSON Schema validators of types the warm-up did not meet."""

    n: int
    wall: float
    loaders: float
    pg: float
    in_tx: float
    compile: float


def load(url: str, target: int, workers: int, profile: str) -> Loaded:
    ctx = mp.get_context("fork")
    counter = ctx.Value("q", 0)
    cpu = ctx.Array("d", 4 * workers)
    procs = [
        ctx.Process(target=_load_worker, args=(url, w, workers, target, counter, cpu, profile))
        for w in range(workers)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    last = 0
    while any(p.is_alive() for p in procs):
        time.sleep(1)
        el = time.perf_counter() - start
        if counter.value - last >= 50_000:
            last = counter.value
            print(
                f"  {last:,} loaded, {last / el:,.0f} res/s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"loader process failed with exit code {p.exitcode}")
    elapsed = time.perf_counter() - start
    return Loaded(
        counter.value, elapsed, sum(cpu[0::4]), sum(cpu[1::4]), sum(cpu[2::4]), sum(cpu[3::4])
    )


def raw_copy(url: str, count: int) -> tuple[int, float]:
    """Baseline: COPY the same resources' JSON into a plain (id, jsonb) table, one process."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_baseline")
        conn.execute("CREATE TABLE raw_baseline (id text PRIMARY KEY, content jsonb NOT NULL)")
        n = 0
        start = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy("COPY raw_baseline (id, content) FROM STDIN") as copy,
        ):
            r = 0
            while n < count:
                for i, raw in bundles():
                    for e in replica(raw, r)["entry"]:
                        res = e["resource"]
                        res["id"] = f"{i}-{n}"
                        copy.write_row((res["id"], orjson.dumps(res).decode()))
                        n += 1
                    if n >= count:
                        break
                r += 1
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE raw_baseline")
    return n, elapsed


# -- sizes --------------------------------------------------------------------------------------
def sizes(conn: sa.Connection) -> None:
    def one(sql: str, table: str = "") -> int:
        return int(conn.execute(sa.text(sql), {"t": table}).scalar_one())

    gb = 1024**3
    names = [t.name for t in INDEX_TABLES]
    res_heap = one("SELECT pg_table_size(:t)", "resource")
    res_ix = one("SELECT pg_indexes_size(:t)", "resource")
    ver = one("SELECT pg_total_relation_size(:t)", "resource_version")
    data = res_heap + res_ix + ver
    idx_heap = sum(one("SELECT pg_table_size(:t)", t) for t in names)
    idx_ix = sum(one("SELECT pg_indexes_size(:t)", t) for t in names)
    idx_rows = sum(
        one("SELECT reltuples::bigint FROM pg_class WHERE relname = :t", t) for t in names
    )
    print(
        f"data: resource {res_heap / gb:.2f} GB (+ its own indexes {res_ix / gb:.2f} GB), "
        f"resource_version {ver / gb:.2f} GB; total {data / gb:.2f} GB"
    )
    print(
        f"search index tables: {idx_rows:,} rows, {idx_heap / gb:.2f} GB rows + "
        f"{idx_ix / gb:.2f} GB B-trees = {(idx_heap + idx_ix) / gb:.2f} GB "
        f"({(idx_heap + idx_ix) / data:.2f}x the data)"
    )
    print(f"database: {one('SELECT pg_database_size(current_database())') / gb:.2f} GB")


# -- queries ------------------------------------------------------------------------------------
def _pick(conn: sa.Connection, res_type: str, n: int) -> list[dict]:
    """``n`` random current resources of ``res_type`` (by primary key, reproducible)."""
    lo, hi = conn.execute(sa.select(sa.func.min(resource.c.pk), sa.func.max(resource.c.pk))).one()
    rng = random.Random(7)
    out: list[dict] = []
    while len(out) < n:
        pks = [rng.randint(lo, hi) for _ in range(n * 4)]
        rows = conn.execute(
            sa.select(resource.c.content).where(
                resource.c.pk.in_(pks), resource.c.res_type == res_type, ~resource.c.deleted
            )
        ).scalars()
        out += list(rows)
    return out[:n]


def _loinc(obs: dict) -> str | None:
    for c in obs.get("code", {}).get("coding", []):
        if c.get("system") == "http://loinc.org":
            return f"http://loinc.org|{c['code']}"
    return None


def query_mix(conn: sa.Connection, runs: int) -> dict[str, list[list[tuple[str, str]] | str]]:
    pats = _pick(conn, "Patient", runs)
    obs = _pick(conn, "Observation", runs * 5)
    codes = Counter(c for o in obs if (c := _loinc(o)))
    common = [c for c, _ in codes.most_common(10)]
    with_value = [o for o in obs if "valueQuantity" in o and _loinc(o)]
    rng = random.Random(11)

    def family(p: dict) -> str:
        return p["name"][0]["family"]

    def mrn(p: dict) -> str:
        for i in p["identifier"]:
            if any(c.get("code") == "MR" for c in i.get("type", {}).get("coding", [])):
                return f"{i['system']}|{i['value']}"
        i = p["identifier"][0]
        return f"{i['system']}|{i['value']}"

    def subj(o: dict) -> str:
        return o["subject"]["reference"]

    mix: dict[str, list] = {
        "Patient?name=": [[("name", family(p))] for p in pats],
        "Patient?identifier=": [[("identifier", mrn(p))] for p in pats],
        "Observation?subject=&code=&date=ge": [
            [
                ("subject", subj(o)),
                ("code", _loinc(o) or common[0]),
                ("date", f"ge{o.get('effectiveDateTime', '2000')[:4]}-01-01"),
            ]
            for o in obs[:runs]
        ],
        "Observation?code=&value-quantity=gt": [
            [
                ("code", _loinc(o)),
                ("value-quantity", f"gt{o['valueQuantity']['value']}"),
            ]
            for o in (with_value * 2)[:runs]
        ],
        "Observation?subject.name= (chain)": [[("subject.name", family(p))] for p in pats],
        "Patient?_has:Observation:subject:code=": [
            [("_has:Observation:subject:code", rng.choice(list(codes)))] for _ in range(runs)
        ],
        "Patient?_revinclude=Observation:subject&_count=20": [
            [("_revinclude", "Observation:subject"), ("_count", "20")] for _ in range(runs)
        ],
        "Patient?_revinclude=Observation:subject&_count=20, decoded": "decoded",
        "Observation?_sort=-date&_count=50": [
            [("_sort", "-date"), ("_count", "50")] for _ in range(runs)
        ],
        "Observation?_sort=-date&_count=50, page 50": "page50",
        "Observation?code=&_total=accurate (common code)": [
            [("code", common[i % len(common)]), ("_total", "accurate")] for i in range(runs)
        ],
    }
    return mix


def _next_query(bundle: dict) -> list[tuple[str, str]] | None:
    for link in bundle.get("link", []):
        if link["relation"] == "next":
            return parse_qsl(urlsplit(link["url"]).query)
    return None


def run_queries(repo: Repository, runs: int, only: str = "") -> None:
    with repo.engine.connect() as conn:
        mix = query_mix(conn, runs)

    # What the HTTP layer passes for a system/*.rs token: a filter on the readable types.
    security = Security(types=frozenset(resource_types()))

    def search(res_type: str, query: list[tuple[str, str]], raw: bool = True) -> dict:
        req = SearchRequest(
            res_type=res_type, query=query, path=res_type, security=security, raw=raw
        )
        bundle = repo.read(lambda u: run_search(u, req, base=BASE))
        orjson.dumps(bundle)  # what the HTTP response does with it
        return bundle

    print(
        f"\n{'query (' + str(runs) + ' runs each)':58s} {'p50 ms':>8s} {'p95 ms':>8s} {'hits':>8s}"
    )
    for label, items in mix.items():
        if only not in label:
            continue
        res_type = label.split("?")[0]
        raw = True
        if items == "decoded":  # baseline: the same page, every resource decoded and re-encoded
            items, raw = mix["Patient?_revinclude=Observation:subject&_count=20"], False
        if items == "page50":
            # Follow the next links from page 1 to page 50, then fetch page 50 ``runs`` times.
            query: list[tuple[str, str]] | None = [("_sort", "-date"), ("_count", "50")]
            walk = []
            for _ in range(49):
                t0 = time.perf_counter()
                b = search("Observation", query)
                walk.append(time.perf_counter() - t0)
                query = _next_query(b)
                assert query is not None, "fewer than 50 pages"
            print(
                f"  (walk of pages 1-49 by next links: mean {statistics.mean(walk) * 1000:.1f} ms"
                " per page)"
            )
            items = [query] * runs
        times: list[float] = []
        hits: list[int] = []
        search(res_type, items[0], raw)  # warm the statement cache
        for q in items:
            t0 = time.perf_counter()
            b = search(res_type, q, raw)
            times.append((time.perf_counter() - t0) * 1000)
            hits.append(
                b.get("total", sum(1 for e in b.get("entry", []) if e["search"]["mode"] == "match"))
            )
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(
            f"{label:58s} {statistics.median(times):8.1f} {p95:8.1f} {statistics.mean(hits):8.1f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="hearth_bench_search", help="database name (dropped on load)")
    ap.add_argument("--target", type=int, default=1_000_000, help="resources to load")
    ap.add_argument("--workers", type=int, default=2, help="loader processes")
    ap.add_argument("--load", type=int, default=1, help="0: reuse the loaded database")
    ap.add_argument("--reuse", action="store_true", help="same as --load 0")
    ap.add_argument("--baseline", type=int, default=200_000, help="resources for the raw COPY")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument(
        "--fill",
        type=int,
        default=0,
        help="before the queries, top the database up to this many resources by writing the "
        "replicas' resource and index rows directly (no validation): for when the machine is "
        "too busy to load them all through Hearth in time; reported, not timed as a load",
    )
    ap.add_argument("--profile", default="", help="cProfile each loader into PREFIX.<worker>")
    ap.add_argument("--only", default="", help="time only the queries whose label has this text")
    args = ap.parse_args(argv)
    logging.getLogger("hearth.search").setLevel(logging.ERROR)  # no slow-query lines in the table
    url = bench_url(args.db)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    if args.load and not args.reuse:
        create_database(args.db)
        done = load(url, args.target, args.workers, args.profile)
        n, el = done.n, done.wall
        print(
            f"Hearth transaction path, {args.workers} processes: {n:,} resources in {el:,.0f} s"
            f" = {n / el:,.0f} resources/s wall clock (load {os.getloadavg()[0]:.1f})"
        )
        ms = 1000 / n
        print(
            f"  CPU: loaders {done.loaders:,.0f} s ({done.loaders * ms:.2f} ms/resource),"
            f" PostgreSQL backends {done.pg:,.0f} s ({done.pg * ms:.2f} ms/resource): on 2 idle"
            f" cores that is {2 * n / (done.loaders + done.pg):,.0f} resources/s"
        )
        print(
            f"  the transaction path alone (CPU inside tx.process, without preparing the test"
            f" data): {done.in_tx * ms:.3f} + PostgreSQL {done.pg * ms:.3f} ="
            f" {(done.in_tx + done.pg) * ms:.3f} ms/resource, that is"
            f" {2 * n / (done.in_tx + done.pg):,.0f} resources/s on 2 idle cores"
            f" (validators compiled after the warm-up: {done.compile:.1f} s)"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        bn, bel = raw_copy(url, min(args.baseline, n))
        print(
            f"baseline, raw COPY into (id, jsonb), 1 process: {bn:,} resources in {bel:,.0f} s"
            f" = {bn / bel:,.0f} resources/s; Hearth/raw = {n / el / (bn / bel):.2f}"
        )
    if args.fill:
        fill(url, args.fill, args.workers)
    engine = create_engine(url, pool_size=1)
    repo = Repository(engine, SearchEngine(base_urls=(BASE,)))
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(resource)).scalar_one()
        print(f"{total:,} resources in {args.db}")
        sizes(conn)
    run_queries(repo, args.runs, args.only)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
