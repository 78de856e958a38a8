"""Hearth beside another FHIR server, the same workload interleaved in one run (issue 22).

    PYTHONPATH=. .venv/bin/python bench/peer.py [--peer URL --peer-token TOKEN
        [--peer-pids PID ...] [--peer-db NAME]] [--hearth URL --hearth-token TOKEN] [--workers 1]
        [--concurrency 1 8 32] [--seconds 5] [--rounds 1] [--ops OP ...]

Without ``--hearth`` it starts ``hearth serve --workers N`` (default 1, the fair match for a
one-process peer such as Medplum) on a throwaway PostgreSQL database. The peer is any FHIR R4
server given by its base URL and a bearer token (how Medplum is run here: ../shared/peers/
medplum.md; nothing of it is in this repository). Without ``--peer`` only Hearth is measured.

Each target is seeded alike (patients with family names, Observations with LOINC codes and
dates), then for each concurrency and operation the phase runs on Hearth and on the peer in turn
(the first alternates each round), so both meet the same machine load. The operations:

- ``create-patient``, ``create-observation``: ``POST`` (``Prefer: return=minimal``);
- ``read``: ``GET [type]/[id]`` of a seeded Patient;
- ``search``: the mix family / subject+code / code with ``_sort=-date``, in turn;
- ``transaction``: a 10-entry transaction Bundle (a Patient and 9 Observations, ``urn:uuid``);
- ``include``: ``Observation?subject=…&_include=Observation:subject``;
- ``revinclude``: ``Patient?_id=…&_revinclude=Observation:subject``;
- ``chained``: ``Observation?subject:Patient.family=…&code=…``;
- ``history``: ``GET Patient/[id]/_history``.

Prints req/s, p50/p95 latency and, where the server's processes are known (Hearth's always,
the peer's with ``--peer-pids``: name a Redis server there too when the peer uses one), their
CPU milliseconds per request (``cpu ms``), and where the database is known (Hearth's always when
the script starts it, the peer's with ``--peer-db``, both on the local PostgreSQL) the CPU of
the PostgreSQL backends connected to it per request (``pg ms``: backends that exit during a phase
are missed, so it is a lower bound), then Hearth/peer ratios (> 1: Hearth does more per second)
of throughput and of total CPU per request, with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.crud import cpu_s, pct, wait_up  # noqa: E402
from resources.storage.migrate import upgrade  # noqa: E402
from tests.servers import (  # noqa: E402
    PG_ADMIN,
    create_pg_database,
    drop_pg_database,
    free_port,
    system_token,
)

OPS = (
    "create-patient",
    "create-observation",
    "read",
    "search",
    "transaction",
    "include",
    "revinclude",
    "chained",
    "history",
)
FAMILIES = ["Okafor", "Nguyen", "Silva", "Kowalski", "Haddad", "Mensah", "Ivanova", "Tanaka"]
CODES = [("8867-4", "Heart rate"), ("8310-5", "Body temperature"), ("29463-7", "Body weight")]
LOINC = "http://loinc.org"
SEED_PATIENTS = 40
FHIR_JSON = "application/fhir+json"


@dataclass
class Target:
    label: str
    base: str
    token: str
    pids: list[int] = field(default_factory=list)
    db: str | None = None  # its PostgreSQL database on this machine, for the backends' CPU
    patients: list[tuple[str, str]] = field(default_factory=list)  # (id, family)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": FHIR_JSON}


def patient(family: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:bench:peer", "value": uuid.uuid4().hex}],
        "name": [{"family": family, "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1984-03-02",
    }


def observation(subject: str, n: int) -> dict:
    code, display = CODES[n % len(CODES)]
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T10:00:00Z",
        "valueQuantity": {"value": 60 + n % 40, "unit": "1", "system": "http://unitsofmeasure.org"},
    }


def transaction_bundle() -> dict:
    pid = f"urn:uuid:{uuid.uuid4()}"
    entries = [
        {
            "fullUrl": pid,
            "resource": patient(random.choice(FAMILIES)),
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for n in range(9):
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": observation(pid, n),
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def request_for(op: str, target: Target, n: int) -> tuple[str, str, dict | None, dict]:
    """(method, path, json body, extra headers) of the n-th request of ``op``."""
    pid, family = random.choice(target.patients)
    code = CODES[n % len(CODES)][0]
    minimal = {"Prefer": "return=minimal"}
    if op == "create-patient":
        return "POST", "/Patient", patient(random.choice(FAMILIES)), minimal
    if op == "create-observation":
        return "POST", "/Observation", observation(f"Patient/{pid}", n), minimal
    if op == "read":
        return "GET", f"/Patient/{pid}", None, {}
    if op == "search":
        return [
            ("GET", f"/Patient?family={family}&_count=20", None, {}),
            ("GET", f"/Observation?subject=Patient/{pid}&code={LOINC}|{code}", None, {}),
            ("GET", f"/Observation?code={LOINC}|{code}&_sort=-date&_count=20", None, {}),
        ][n % 3]
    if op == "transaction":
        return "POST", "", transaction_bundle(), minimal
    if op == "include":
        return (
            "GET",
            f"/Observation?subject=Patient/{pid}&_include=Observation:subject",
            None,
            {},
        )
    if op == "revinclude":
        return "GET", f"/Patient?_id={pid}&_revinclude=Observation:subject", None, {}
    if op == "chained":
        return (
            "GET",
            f"/Observation?subject:Patient.family={family}&code={LOINC}|{code}&_count=20",
            None,
            {},
        )
    if op == "history":
        return "GET", f"/Patient/{pid}/_history", None, {}
    raise ValueError(op)


async def phase(target: Target, op: str, conc: int, seconds: float) -> list[float]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(
        base_url=target.base, limits=limits, timeout=120, headers=target.headers
    ) as client:
        counter = itertools.count()

        async def worker() -> None:
            while time.perf_counter() < stop:
                method, path, body, extra = request_for(op, target, next(counter))
                t0 = time.perf_counter()
                r = await client.request(method, path or "/", json=body, headers=extra)
                if r.status_code >= 300:
                    raise RuntimeError(
                        f"{target.label} {op} {path}: {r.status_code} {r.text[:300]}"
                    )
                lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(conc)))
    return lat


async def seed(target: Target) -> None:
    async with httpx.AsyncClient(base_url=target.base, timeout=120, headers=target.headers) as c:
        for i in range(SEED_PATIENTS):
            family = FAMILIES[i % len(FAMILIES)]
            r = await c.post("/Patient", json=patient(family))
            r.raise_for_status()
            pid = r.json()["id"]
            target.patients.append((pid, family))
            for n in range(3):
                (
                    await c.post("/Observation", json=observation(f"Patient/{pid}", n))
                ).raise_for_status()


def start_hearth(workers: int) -> tuple[Target, subprocess.Popen, str]:
    name, url = create_pg_database()
    upgrade(url)
    port = free_port()
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": url,
        "HEARTH_PORT": str(port),
        "HEARTH_BASE_URL": f"http://127.0.0.1:{port}",
        "HEARTH_WORKERS": str(workers),
        "HEARTH_LOG_LEVEL": "warning",
        "HEARTH_DICOM_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "serve"], env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}/fhir"
    token = system_token(url, f"http://127.0.0.1:{port}")
    wait_up(base + "/metadata")
    return Target("hearth", base, token, [proc.pid], db=name), proc, name


def cpu_of(pids: list[int]) -> float | None:
    return sum(cpu_s(p) for p in pids) if pids else None


def pg_backends(db: str | None) -> dict[int, float] | None:
    """CPU seconds of each PostgreSQL backend now connected to ``db`` (local server only)."""
    if db is None:
        return None
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            pids = [r[0] for r in conn.execute(PG_PIDS, (db,)).fetchall()]
    except psycopg.OperationalError:  # e.g. max_connections reached on a shared server
        return None  # that phase's pg ms reads nan rather than ending the run
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_s(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


PG_PIDS = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"


def pg_delta(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """CPU seconds the backends spent between two snapshots (a new backend counts whole; one
    that exited between the catalogue query and reading its /proc entry reads 0 and counts 0)."""
    if before is None or after is None:
        return None
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def nan0(x: float) -> float:
    return 0.0 if x != x else x


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--peer", help="the other server's FHIR base URL")
    ap.add_argument("--peer-token", default="", help="its bearer token")
    ap.add_argument("--peer-label", default="peer")
    ap.add_argument("--peer-pids", type=int, nargs="*", default=[], help="its process ids (CPU)")
    ap.add_argument("--peer-db", help="its PostgreSQL database on this server (backends' CPU)")
    ap.add_argument("--hearth", help="a running Hearth's FHIR base (default: start one)")
    ap.add_argument("--hearth-token", default="")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    args = ap.parse_args()
    proc = db = None
    try:
        if args.hearth:
            hearth = Target("hearth", args.hearth.rstrip("/"), args.hearth_token)
        else:
            hearth, proc, db = start_hearth(args.workers)
        targets = [hearth]
        if args.peer:
            targets.append(
                Target(
                    args.peer_label,
                    args.peer.rstrip("/"),
                    args.peer_token,
                    args.peer_pids,
                    args.peer_db,
                )
            )
        for t in targets:
            asyncio.run(seed(t))
            for op in args.ops:  # warm-up: every code path once
                asyncio.run(phase(t, op, 2, 0.5))
        load = os.getloadavg()
        print(
            f"# bench/peer.py: {' vs '.join(t.label for t in targets)}; {args.seconds:.0f} s per "
            f"phase, {args.rounds} round(s), {os.cpu_count()} cores, load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
        )
        print(
            f"{'op':<19}{'conc':>5} {'server':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'cpu ms':>7}"
            f" {'pg ms':>6}"
        )
        results: dict[tuple[str, int, str], list[tuple[float, float, float, float, float]]] = {}
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else targets[::-1]
            for conc in args.concurrency:
                for op in args.ops:
                    for t in order:
                        c0 = cpu_of(t.pids)
                        g0 = pg_backends(t.db)
                        t0 = time.perf_counter()
                        lat = asyncio.run(phase(t, op, conc, args.seconds))
                        rate = len(lat) / (time.perf_counter() - t0)
                        c1 = cpu_of(t.pids)
                        g = pg_delta(g0, pg_backends(t.db))
                        cpu = (
                            (c1 - c0) / len(lat) * 1e3
                            if c0 is not None and c1 is not None
                            else float("nan")
                        )
                        pg_ms = g / len(lat) * 1e3 if g is not None else float("nan")
                        row = (rate, pct(lat, 50), pct(lat, 95), cpu, pg_ms)
                        results.setdefault((op, conc, t.label), []).append(row)
                        print(
                            f"{op:<19}{conc:>5} {t.label:>8} {rate:8.1f} {row[1]:8.1f} "
                            f"{row[2]:8.1f} {cpu:7.2f} {pg_ms:6.2f}",
                            flush=True,
                        )
        if len(targets) == 2:
            peer = targets[1].label
            load = os.getloadavg()
            print(
                f"# hearth / {peer}, medians over the rounds (> 1: Hearth does more per second; "
                f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
            )
            print(
                f"{'op':<19}"
                + "".join(f"{'c=' + str(c):>8}" for c in args.concurrency)
                + "   CPU ms/request (cpu + pg), medians: "
                + f"{peer} / hearth at "
                + ", ".join(f"c={c}" for c in args.concurrency)
            )
            for op in args.ops:
                cells, cpus = [], []
                for conc in args.concurrency:
                    hr = results[(op, conc, "hearth")]
                    pr = results[(op, conc, peer)]
                    h = statistics.median(r[0] for r in hr)
                    p = statistics.median(r[0] for r in pr)
                    cells.append(f"{h / p:8.2f}")
                    hc = statistics.median(r[3] + nan0(r[4]) for r in hr)
                    pc = statistics.median(r[3] + nan0(r[4]) for r in pr)
                    cpus.append(f"{pc:.1f} / {hc:.1f}")
                print(f"{op:<19}" + "".join(cells) + "   " + ", ".join(cpus))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        if db is not None:
            drop_pg_database(db)


if __name__ == "__main__":
    main()
