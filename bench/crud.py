"""CRUD speed over HTTP on PostgreSQL, next to raw psycopg on the same database in the same run.

    .venv/bin/python bench/crud.py [--seconds 5] [--concurrency 1 8 32] [--workers 2]

Starts `hearth serve` on a throwaway PostgreSQL database, then for each concurrency level:
creates/s and reads/s over HTTP (p50/p99 latency), and the raw rate of single-row INSERT
(autocommit) and point SELECT of the same JSON into a plain (id, jsonb) table with psycopg from
the same number of threads. Prints each figure with its baseline and ratio, and the server's RSS.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resources.migrate import upgrade  # noqa: E402
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


def rss_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of ``pid`` and its children, summed. RSS counts a page shared by the
    forked workers once in every process; PSS divides it among them (what the server uses)."""
    rss = pss = 0
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    for p in pids:
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


def auth_cost(url: str, root: str, authorization: str, ids: list[str]) -> None:
    """What authorization adds to each request, measured in-process on the same database: the
    bearer-token check (one primary-key lookup), the audit record (a write's record is appended
    in the write's transaction; a read's is handed to the background writer), next to the FHIR
    read they guard. Hearth has no auth-off mode to compare
    against, so the baseline is the read itself."""
    from fhir_server.app import build_context
    from fhir_server.auth.audit_events import rest_event
    from fhir_server.auth.tokens import bearer_access
    from fhir_server.settings import Settings
    from resources import audit
    from resources.auth_store import AuthStore
    from resources.db import create_engine

    settings = Settings(database_url=url, base_url=root)
    ctx = build_context(settings)
    # as the app builds it (AuthService.build): token lookups on a pool without the pre-ping;
    # the baseline is the same lookup on the main (pre-pinged) pool, as before that change
    store = AuthStore(
        ctx.repo.engine, create_engine(url, pool_size=4, pre_ping=False, autocommit=True)
    )
    pinged = AuthStore(ctx.repo.engine)
    n = 2000
    try:
        check, check_pinged, record, read, submit = [], [], [], [], []
        writer = audit.AuditWriter(ctx.repo.engine)
        for i in range(n):
            rid = ids[i % len(ids)]
            t0 = time.perf_counter()
            bearer_access(pinged, settings, authorization)
            check_pinged.append(time.perf_counter() - t0)
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
        alone: list[
            float
        ] = []  # the same check in a tight loop, with no audit writer thread beside it
        for _ in range(n):
            t0 = time.perf_counter()
            bearer_access(store, settings, authorization)
            alone.append(time.perf_counter() - t0)
    finally:
        ctx.repo.engine.dispose()
        store.lookup.dispose()
    print(f"# authorization cost per request, in-process, {n} requests, one thread")
    for label, xs in (
        ("FHIR read (baseline)", read),
        ("token check, pre-ping", check_pinged),
        ("token check", check),
        ("token check, alone", alone),
        ("audit record, in tx", record),
        ("audit submit (reads)", submit),
    ):
        print(f"{label:<22} p50 {pct(xs, 50):6.3f} ms   p95 {pct(xs, 95):6.3f} ms")
    print(f"background writer drained its last records in {drain * 1000:.0f} ms")
    print(f"token check p95 {pct(check, 95):.3f} ms (goal < 1 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured warm-up")
    args = ap.parse_args()

    name, url = create_pg_database()
    dsn = url.replace("+psycopg", "")
    proc = None
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
        proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server.cli", "serve"], env=env, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}/fhir"
        HEADERS["Authorization"] = f"Bearer {system_token(url, f'http://127.0.0.1:{port}')}"
        for _ in range(200):
            try:
                if httpx.get(base + "/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        print(
            f"# Hearth CRUD benchmark — PostgreSQL, {args.workers} uvicorn worker(s), "
            f"{args.seconds:.0f} s per phase, {os.cpu_count()} CPU cores"
        )
        print(
            f"{'op':<7}{'conc':>5} {'hearth/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'raw/s':>10} "
            f"{'raw p50':>8} {'ratio':>7}"
        )
        http_ids: list[str] = []
        raw_ids: list[str] = []
        # Warm-up (not measured): every worker process compiles its validators and indexers.
        for _ in range(2):
            _, _, made = asyncio.run(http_phase(base, 4, args.warmup, "create", []))
            http_ids += made
            asyncio.run(http_phase(base, 4, args.warmup / 2, "read", http_ids))
        results = []
        for conc in args.concurrency:
            for op in ("create", "read"):
                rate, lat, made = asyncio.run(http_phase(base, conc, args.seconds, op, http_ids))
                http_ids += made
                rrate, rlat, rmade = raw_phase(dsn, conc, args.seconds, op, raw_ids)
                raw_ids += rmade
                ratio = rate / rrate
                results.append((op, conc, ratio))
                print(
                    f"{op:<7}{conc:>5} {rate:>10.0f} {pct(lat, 50):>8.2f} {pct(lat, 99):>8.2f} "
                    f"{rrate:>10.0f} {pct(rlat, 50):>8.2f} {ratio:>7.2f}"
                )
        rss, pss = rss_mb(proc.pid)
        print(
            f"server memory after the run, all processes: PSS {pss:.0f} MB (goal < 300 MB), "
            f"RSS summed {rss:.0f} MB (counts the pages the forked workers share once per process)"
        )
        auth_cost(url, f"http://127.0.0.1:{port}", HEADERS["Authorization"], http_ids)
        for op, goal in (("create", 0.35), ("read", 0.30)):
            worst = min(r for o, _, r in results if o == op)
            mean = statistics.mean(r for o, _, r in results if o == op)
            print(f"{op}: ratio to raw psycopg min {worst:.2f}, mean {mean:.2f} (goal >= {goal})")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        drop_pg_database(name)


if __name__ == "__main__":
    main()
