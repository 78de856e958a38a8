"""AuditEvent search and audit appends for two checkouts in the same run (issue 15: AuditEvent
searched through the search engine instead of its own compiler over ``audit_index``).

    .venv/bin/python bench/audit_search.py OLD_TREE NEW_TREE [--events 20000] [--runs 30]
        [--rounds 2] [--backend postgresql|sqlite]

Each round runs one process per tree, alternating (old, new, new, old, ...), so both meet the
same machine load. A process imports Hearth from its tree, makes a fresh database (PostgreSQL at
``HEARTH_TEST_POSTGRES``, as bench/search.py, or a SQLite file) and times

* ``append``: ``--events`` BALP-shaped REST events (``rest_event``, as the gate records them: 200
  patients, 1,000 Observations, 50 client apps, reads/searches/creates, 1 in 10 failed) appended
  through ``audit.append_many`` in batches of 100, one transaction each -- the background audit
  writer's path, which is all the server does per event; then ``ANALYZE`` (a database in use
  has planner statistics; without them SQLite picks a poor index for sorted searches);
* each query of the mix below, ``--runs`` times with values drawn from the loaded data, as
  ``GET [base]/AuditEvent?...`` answers an administrator: the old tree's ``audit_search.search``
  and its searchset Bundle, or the new tree's ``resources.search.engine.run_search`` (stored JSON
  served as text, as over HTTP); both then ``orjson.dumps`` the Bundle. p50 in ms.

Prints per tree the median over rounds, and new/old.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ADMIN = os.environ.get("HEARTH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE = "https://hearth.example/fhir"
QUERIES = {
    "patient -date": lambda r: [("patient", f"Patient/p{r.randrange(200)}"), ("_sort", "-date")],
    "entity": lambda r: [("entity", f"Observation/o{r.randrange(1000)}")],
    "date range": lambda r: [("date", f"ge2026-11-0{r.randrange(1, 9)}"), ("_sort", "-date")],
    "subtype+outcome": lambda r: [("subtype", "search-type"), ("outcome", "4")],
    "agent:identifier": lambda r: [
        ("agent:identifier", f"urn:hearth:client|app-{r.randrange(50)}"),
        ("action", "R"),
    ],
    "count action": lambda r: [("action", "C"), ("_summary", "count")],
    "include entity": lambda r: [
        ("entity", f"Observation/o{r.randrange(1000)}"),
        ("_include", "AuditEvent:entity"),
    ],
}


def _events(n: int) -> list[tuple[datetime, dict]]:
    from fhir_server.auth.audit_events import rest_event

    rnd = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        interaction = rnd.choice(["read", "read", "search-type", "create", "update"])
        patient = f"p{rnd.randrange(200)}"
        what = [f"Observation/o{rnd.randrange(1000)}"] if interaction != "search-type" else []
        event = rest_event(
            base=BASE,
            interaction=interaction,
            status=404 if rnd.random() < 0.1 else 200,
            client_id=f"app-{rnd.randrange(50)}",
            username=f"user{rnd.randrange(30)}",
            fhir_user=f"Practitioner/dr{rnd.randrange(30)}",
            patient=patient,
            ip="10.0.0.1",
            what=what,
            query=f"subject=Patient/{patient}" if interaction == "search-type" else None,
        )
        out.append((start + timedelta(seconds=i * 864_000 // n), event))
    return out


def _database(backend: str, tmp: str) -> tuple[str, object]:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/audit.db", lambda: None
    import psycopg

    name = f"bench_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")

    return f"{ADMIN.rsplit('/', 1)[0]}/{name}", drop


def _measure(tree: str, n_events: int, runs: int, backend: str) -> dict:
    sys.path.insert(0, tree)
    import orjson

    import resources
    from resources import audit
    from resources.search import SearchEngine

    create_engine = _module("resources.storage.db", "resources.db").create_engine
    upgrade = _module("resources.storage.migrate", "resources.migrate").upgrade
    Repository = _module("resources.storage.repository", "resources.repository").Repository

    assert resources.__file__ is not None and resources.__file__.startswith(tree)
    # the old tree has its own AuditEvent compiler (look in the tree: an editable install of
    # another checkout may resolve a module this tree lacks)
    old = any(
        (Path(tree) / "resources" / p).exists() for p in ("audit_search.py", "audit/search.py")
    )
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = _database(backend, tmp)
        try:
            upgrade(url)
            engine = create_engine(url)
            repo = Repository(engine, SearchEngine(base_urls=(BASE,)))
            events = _events(n_events)
            started = time.perf_counter()
            for i in range(0, len(events), 100):
                with engine.begin() as conn:
                    audit.append_many(conn, events[i : i + 100])
            append_s = time.perf_counter() - started
            with engine.begin() as conn:  # planner statistics, as a database in use has them
                conn.exec_driver_sql("ANALYZE")
            search = _old_search if old else _new_search
            rnd = random.Random(11)
            p50 = {}
            for name, make in QUERIES.items():
                search(repo, make(rnd), orjson)  # warm: compiled plans, caches
                times = []
                for _ in range(runs):
                    query = make(rnd)
                    t0 = time.perf_counter()
                    search(repo, query, orjson)
                    times.append(time.perf_counter() - t0)
                p50[name] = statistics.median(times) * 1000
            engine.dispose()
        finally:
            drop()  # type: ignore[operator]
    return {"old": old, "append_events_per_s": n_events / append_s, "p50_ms": p50}


def _module(new: str, old: str):  # type: ignore[no-untyped-def]
    """A module by its path after issue 15's package split, or before it (an older tree)."""
    import importlib

    try:
        return importlib.import_module(new)
    except ImportError:
        return importlib.import_module(old)


def _old_search(repo, query, orjson) -> int:  # type: ignore[no-untyped-def]
    audit_search = _module("resources.audit.search", "resources.audit_search")
    searchset_bundle = _module("resources.storage.bundles", "resources.bundles").searchset_bundle
    Stored = _module("resources.storage.store", "resources.store").Stored

    with repo.engine.connect() as conn:
        found = audit_search.search(conn, audit_search.AuditQuery(query=query))
    rows = []
    for seq, recorded, event in found.rows:
        content = {**event, "id": f"audit-{seq}", "meta": {"versionId": "1"}}
        rows.append(Stored("AuditEvent", content["id"], 1, recorded, False, content))
    bundle = searchset_bundle(
        BASE,
        rows,
        includes=found.included,
        self_url=f"{BASE}/AuditEvent",
        next_url=f"{BASE}/AuditEvent?_page={found.next_page}" if found.next_page else None,
        total=found.total,
    )
    return len(orjson.dumps(bundle))


def _new_search(repo, query, orjson) -> int:  # type: ignore[no-untyped-def]
    engine = _module("resources.search.engine", "resources.searching")
    SearchRequest, run_search = engine.SearchRequest, engine.run_search

    req = SearchRequest("AuditEvent", query, path="AuditEvent", raw=True)
    return len(orjson.dumps(repo.read(lambda u: run_search(u, req, base=BASE))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="*")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.events, args.runs, args.backend)))
        return
    old, new = (str(Path(t).resolve()) for t in args.trees)
    results: dict[str, list[dict]] = {old: [], new: []}
    for n in range(args.rounds):
        for tree in (old, new) if n % 2 == 0 else (new, old):
            cmd = [sys.executable, __file__, "--one", tree, "--events", str(args.events)]
            cmd += ["--runs", str(args.runs), "--backend", args.backend]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tree)
            results[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(tree, results[tree][-1], flush=True)
    print(f"{args.backend}, {args.events} events, p50 of {args.runs} runs, median of rounds:")

    def med(tree: str, pick) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(pick(r) for r in results[tree])

    o = med(old, lambda r: r["append_events_per_s"])
    w = med(new, lambda r: r["append_events_per_s"])
    print(f"  append: old {o:,.0f} events/s, new {w:,.0f} events/s (new/old {w / o:.2f})")
    for name in QUERIES:
        o = med(old, lambda r, name=name: r["p50_ms"][name])
        w = med(new, lambda r, name=name: r["p50_ms"][name])
        print(f"  {name:18s} old {o:7.2f} ms, new {w:7.2f} ms (new/old {w / o:.2f})")


if __name__ == "__main__":
    main()
