"""CRUD speed over HTTP on PostgreSQL, next to raw psycopg and to the HTTP stack's own ceiling
on the same database in the same run.

    .venv/bin/python bench/crud.py [--seconds 5] [--concurrency 1 8 32] [--workers 2]
    .venv/bin/python bench/crud.py --auth-only     # only the in-process authorization section

Starts `hearth serve` on a throwaway PostgreSQL database, and `bench/ceiling_app.py` (FastAPI +
uvicorn with the same workers and options, one psycopg statement per request), then for each
concurrency level: creates/s and reads/s over HTTP (p50/p99 latency, the servers' CPU per
request) from Hearth and from the ceiling app, and the raw rate of single-row INSERT
(autocommit) and point SELECT of the same JSON into a plain (id, jsonb) table with psycopg from
the same number of threads. Prints Hearth/raw, ceiling/raw and Hearth/ceiling, the server's RSS,
then the in-process cost of the token check and the audit record.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resources.storage.migrate import upgrade  # noqa: E402
from tests.servers import (  # noqa: E402
    create_pg_database,
    drop_pg_database,
    free_port,
    system_token,
)

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:bench:mrn", "value": "0"}],
    "active": True,
    "name": [{"family": "Okafor", "given": ["Ada", "N."]}],
    "telecom": [{"system": "phone", "value": "+27 11 555 0100"}],
    "gender": "female",
    "birthDate": "1984-03-02",
    "address": [{"line": ["12 Long Street"], "city": "Cape Town", "country": "ZA"}],
}


def body(n: int) -> dict:
    return {
        **PATIENT,
        "identifier": [{"system": "urn:bench:mrn", "value": f"{n}-{uuid.uuid4().hex[:8]}"}],
    }


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")


HEADERS: dict[str, str] = {}  # the bench client's Authorization header


async def http_phase(
    base: str, conc: int, seconds: float, kind: str, ids: list[str]
) -> tuple[float, list[float], list[str]]:
    lat: list[float] = []
    created: list[str] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=60, headers=HEADERS
    ) as client:

        async def worker(w: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                if kind == "create":
                    r = await client.post(
                        "/Patient",
                        json=body(w * 10_000_000 + n),
                        headers={"Prefer": "return=minimal"},
                    )
                    assert r.status_code == 201, r.text
                    created.append(r.headers["location"].split("/")[-3])
                else:
                    r = await client.get(f"/Patient/{random.choice(ids)}")
                    assert r.status_code == 200, r.text
                lat.append(time.perf_counter() - t0)
                n += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(conc)))
        elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, lat, created


def raw_phase(
    dsn: str, conc: int, seconds: float, kind: str, ids: list[str]
) -> tuple[float, list[float], list[str]]:
    lat: list[float] = []
    created: list[str] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(w: int) -> None:
        local, made = [], []
        with psycopg.connect(dsn, autocommit=True) as conn:
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                if kind == "create":
                    rid = str(uuid.uuid4())
                    conn.execute(
                        "insert into raw_resource (id, content) values (%s, %s)",
                        (rid, orjson.dumps(body(n)).decode()),
                    )
                    made.append(rid)
                else:
                    conn.execute(
                        "select content from raw_resource where id = %s", (random.choice(ids),)
                    ).fetchone()
                local.append(time.perf_counter() - t0)
                n += 1
        with lock:
            lat.extend(local)
            created.extend(made)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(conc)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.perf_counter() - t0), lat, created


def server_pids(pid: int) -> list[int]:
    """A server's process and its worker processes."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(p) for p in out.split())]


def rss_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of ``pid`` and its children, summed. RSS counts a page shared by the
    forked workers once in every process; PSS divides it among them (what the server uses)."""
    rss = pss = 0
    for p in server_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except FileNotFoundError:
            pass
    return rss / 1024, pss / 1024


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a server: the process and its worker processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in server_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total / tick


def auth_cost(url: str, root: str, authorization: str, ids: list[str], n: int = 2000) -> None:
    """What authorization adds to each request, measured in-process on the same database: the
    bearer-token check (one primary-key lookup), the audit record (a write's record is appended
    in the write's transaction; a read's is handed to the background writer), next to the FHIR
    read they guard (as it runs now, its connection not pre-pinged, and as it ran before, on a
    pre-pinged pool). Hearth has no auth-off mode to compare against, so the baseline is the read
    itself. The token check runs three ways, interleaved in the same loop: on the main pool
    (pre-ping), through SQLAlchemy on an autocommit pool of its own (the previous server path),
    and as the server now runs it (``AuthStore.serving``: prepared, raw psycopg); then the last
    two again each in a tight loop of their own, with no audit writer thread beside them."""
    from fhir_server.auth.audit_events import rest_event
    from fhir_server.auth.tokens import bearer_access
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.settings import Settings
    from resources import audit
    from resources.auth.store import TOKEN_LOOKUP, AuthStore
    from resources.auth.token_lookup import SqlTokenLookup
    from resources.storage.db import create_engine, normalise_url
    from resources.storage.repository import Repository

    settings = Settings(database_url=url, base_url=root)
    ctx = build_context(settings)
    store = AuthStore.serving(ctx.repo.engine)  # as AuthService.build makes it
    sa_pool = create_engine(url, pool_size=4, pre_ping=False, autocommit=True)
    previous = AuthStore(ctx.repo.engine, SqlTokenLookup(sa_pool, TOKEN_LOOKUP, owned=True))
    pinged = AuthStore(ctx.repo.engine)
    # the read as it ran before: a connection pre-pinged at each checkout (SQLAlchemy's own)
    old_engine = sa.create_engine(
        normalise_url(url), pool_pre_ping=True, json_deserializer=orjson.loads
    )
    old_repo = Repository(old_engine, ctx.repo.search)
    cpu0 = time.process_time()
    try:
        check, check_prev, check_pinged, record, read, submit = [], [], [], [], [], []
        read_prev = []
        writer = audit.AuditWriter(ctx.repo.engine)
        for i in range(n):
            rid = ids[i % len(ids)]
            t0 = time.perf_counter()
            old_repo.read(lambda u, rid=rid: u.read("Patient", rid))
            read_prev.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bearer_access(pinged, settings, authorization)
            check_pinged.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bearer_access(previous, settings, authorization)
            check_prev.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            access = bearer_access(store, settings, authorization)
            t1 = time.perf_counter()
            ctx.repo.read(lambda u, rid=rid: u.read("Patient", rid))
            t2 = time.perf_counter()
            audit.append_alone(
                ctx.repo.engine,
                rest_event(
                    base=settings.fhir_base,
                    interaction="read",
                    status=200,
                    client_id=access.client_id,
                    username=None,
                    fhir_user=None,
                    patient=None,
                    ip="127.0.0.1",
                    what=[f"Patient/{rid}"],
                ),
            )
            t3 = time.perf_counter()
            writer.submit({"resourceType": "AuditEvent", "n": i})
            submit.append(time.perf_counter() - t3)
            check.append(t1 - t0)
            read.append(t2 - t1)
            record.append(t3 - t2)
        t0 = time.perf_counter()
        writer.close()
        drain = time.perf_counter() - t0
        alone: dict[str, list[float]] = {"previous": [], "raw": []}
        cpu: dict[str, float] = {}
        for label, s in (("previous", previous), ("raw", store), ("previous", previous)):
            xs = alone[label] = []  # the second "previous" round is the one kept: same warmth
            c0 = time.process_time()
            for _ in range(n):
                t0 = time.perf_counter()
                bearer_access(s, settings, authorization)
                xs.append(time.perf_counter() - t0)
            cpu[label] = (time.process_time() - c0) / n
    finally:
        ctx.repo.engine.dispose()
        old_engine.dispose()
        store.close()
        previous.close()
    load = os.getloadavg()
    print(
        f"# authorization cost per request, in-process, {n} requests, one thread "
        f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"{time.process_time() - cpu0:.1f} s CPU)"
    )
    for label, xs in (
        ("FHIR read (baseline), unpinged (now)", read),
        ("FHIR read, pre-pinged (previous)", read_prev),
        ("token check, pre-ping pool", check_pinged),
        ("token check, SQLAlchemy lookup pool (previous)", check_prev),
        ("token check, raw prepared (now)", check),
        ("token check alone, previous", alone["previous"]),
        ("token check alone, raw prepared", alone["raw"]),
        ("audit record, in tx", record),
        ("audit submit (reads)", submit),
    ):
        print(f"{label:<48} p50 {pct(xs, 50):6.3f} ms   p95 {pct(xs, 95):6.3f} ms")
    print(
        f"token check alone, process CPU per check: previous {cpu['previous'] * 1000:.3f} ms, "
        f"raw prepared {cpu['raw'] * 1000:.3f} ms"
    )
    print(f"background writer drained its last records in {drain * 1000:.0f} ms")
    print(
        f"token check p95 {pct(check, 95):.3f} ms interleaved, {pct(alone['raw'], 95):.3f} ms "
        f"alone (goal < 1 ms; previous path {pct(check_prev, 95):.3f} / "
        f"{pct(alone['previous'], 95):.3f} ms)"
    )


def start_ceiling(dsn: str, workers: int) -> tuple[subprocess.Popen, str]:
    """``bench/ceiling_app.py`` under uvicorn with the worker count and options `hearth serve`
    uses (``fhir_server.cli._uvicorn``: log level warning, no access log)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table ceiling_resource (id text primary key, content jsonb not null)")
    port = free_port()
    code = (
        "import uvicorn; uvicorn.run('bench.ceiling_app:create_app', factory=True, "
        f"host='127.0.0.1', port={port}, workers={workers}, log_level='warning', "
        "access_log=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "CEILING_DSN": dsn, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"no server at {url}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured warm-up")
    ap.add_argument(
        "--auth-only", action="store_true", help="only the in-process authorization section"
    )
    ap.add_argument(
        "--no-auth", action="store_true", help="skip the in-process authorization section"
    )
    args = ap.parse_args()

    name, url = create_pg_database()
    dsn = url.replace("+psycopg", "")
    procs: list[subprocess.Popen] = []
    try:
        upgrade(url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create table raw_resource (id text primary key, content jsonb not null)")
        port = free_port()
        env = {
            **os.environ,
            "HEARTH_DATABASE_URL": url,
            "HEARTH_PORT": str(port),
            "HEARTH_BASE_URL": f"http://127.0.0.1:{port}",
            "HEARTH_WORKERS": str(args.workers),
            "HEARTH_LOG_LEVEL": "warning",
            "HEARTH_DICOM_ENABLED": "false",  # not measured here; leaves port 11112 alone
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "fhir_server.cli", "serve"],
                env=env,
                start_new_session=True,
            )
        )
        base = f"http://127.0.0.1:{port}/fhir"
        HEADERS["Authorization"] = f"Bearer {system_token(url, f'http://127.0.0.1:{port}')}"
        ceiling = None
        if not args.auth_only:
            proc, ceiling = start_ceiling(dsn, args.workers)
            procs.append(proc)
            wait_up(ceiling + "/Patient/none")
        wait_up(base + "/metadata")
        http_ids: list[str] = []
        if args.auth_only:
            _, _, http_ids = asyncio.run(http_phase(base, 4, args.warmup, "create", []))
            auth_cost(url, f"http://127.0.0.1:{port}", HEADERS["Authorization"], http_ids)
            return
        assert ceiling is not None
        load = os.getloadavg()
        print(
            f"# Hearth CRUD benchmark — PostgreSQL, {args.workers} uvicorn worker(s), "
            f"{args.seconds:.0f} s per phase, {os.cpu_count()} CPU cores, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
        )
        print(
            "# ceiling: bench/ceiling_app.py (FastAPI + uvicorn, same workers and options, "
            "one psycopg statement per request, no auth/audit/validation); "
            "H cpu / C cpu: server processes' CPU microseconds per request"
        )
        print(
            f"{'op':<7}{'conc':>5} {'hearth/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'ceil/s':>8} {'p50 ms':>7} {'raw/s':>8} {'p50 ms':>7} "
            f"{'H/raw':>6} {'C/raw':>6} {'H/C':>6} {'H cpu':>6} {'C cpu':>6}"
        )
        ceil_ids: list[str] = []
        raw_ids: list[str] = []
        # Warm-up (not measured): every worker process compiles its validators and indexers.
        for _ in range(2):
            _, _, made = asyncio.run(http_phase(base, 4, args.warmup, "create", []))
            http_ids += made
            asyncio.run(http_phase(base, 4, args.warmup / 2, "read", http_ids))
            _, _, made = asyncio.run(http_phase(ceiling, 4, args.warmup / 2, "create", []))
            ceil_ids += made
            asyncio.run(http_phase(ceiling, 4, args.warmup / 2, "read", ceil_ids))
        results = []
        for conc in args.concurrency:
            for op in ("create", "read"):
                c0 = cpu_s(procs[0].pid)
                rate, lat, made = asyncio.run(http_phase(base, conc, args.seconds, op, http_ids))
                hcpu = (cpu_s(procs[0].pid) - c0) / len(lat) * 1e6
                http_ids += made
                c0 = cpu_s(procs[1].pid)
                crate, clat, made = asyncio.run(
                    http_phase(ceiling, conc, args.seconds, op, ceil_ids)
                )
                ccpu = (cpu_s(procs[1].pid) - c0) / len(clat) * 1e6
                ceil_ids += made
                rrate, rlat, rmade = raw_phase(dsn, conc, args.seconds, op, raw_ids)
                raw_ids += rmade
                results.append((op, conc, rate / rrate, crate / rrate, rate / crate))
                print(
                    f"{op:<7}{conc:>5} {rate:>9.0f} {pct(lat, 50):>7.2f} {pct(lat, 99):>7.2f} "
                    f"{crate:>8.0f} {pct(clat, 50):>7.2f} {rrate:>8.0f} {pct(rlat, 50):>7.2f} "
                    f"{rate / rrate:>6.3f} {crate / rrate:>6.3f} {rate / crate:>6.2f} "
                    f"{hcpu:>6.0f} {ccpu:>6.0f}"
                )
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after the HTTP phases")
        rss, pss = rss_mb(procs[0].pid)
        print(
            f"server memory after the run, all processes: PSS {pss:.0f} MB (goal < 300 MB), "
            f"RSS summed {rss:.0f} MB (counts the pages the forked workers share once per process)"
        )
        if not args.no_auth:
            auth_cost(url, f"http://127.0.0.1:{port}", HEADERS["Authorization"], http_ids)
        for op, goal in (("create", 0.35), ("read", 0.30)):
            rows = [r for r in results if r[0] == op]
            print(
                f"{op}: Hearth/raw min {min(r[2] for r in rows):.3f} "
                f"mean {statistics.mean(r[2] for r in rows):.3f} (goal >= {goal}); "
                f"ceiling/raw min {min(r[3] for r in rows):.3f} "
                f"mean {statistics.mean(r[3] for r in rows):.3f}; "
                f"Hearth/ceiling min {min(r[4] for r in rows):.2f} "
                f"mean {statistics.mean(r[4] for r in rows):.2f}"
            )
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        drop_pg_database(name)


if __name__ == "__main__":
    main()
