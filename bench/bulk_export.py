"""Bulk Data export speed: resources/s from ``$export`` kick-off to the last NDJSON byte
downloaded, next to two baselines in the same run on the same server and data:

- paging the same resources through plain search (``GET /fhir/[type]?_count=1000``, following
  ``next`` links) — what a client without Bulk Data would do;
- a raw ``SELECT content FROM resource`` in primary-key order, 1000 rows a query, in this process
  (no HTTP, no files): decoded and re-encoded to JSON, and fetched as JSON text (what the
  exporter does) — the database's own speed.

    .venv/bin/python bench/bulk_export.py [--patients 10] [--backend postgresql|sqlite]

Starts `hearth serve` (one process, no worker: the export runs in the API process's background
thread) on a throwaway database and loads ``--patients`` Synthea patient transaction Bundles
(../shared/synthea) through ``POST /fhir``.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import time
from pathlib import Path

import httpx
import orjson
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, hearth  # noqa: E402
from resources.storage.db import create_engine  # noqa: E402
from resources.storage.schema import resource  # noqa: E402
from tests.shared import shared_path  # noqa: E402


def synthea(n: int) -> list[dict]:
    out = []
    with tarfile.open(shared_path("synthea", "r4_transaction_bundles_all617.tar.gz")) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                f = tar.extractfile(member)
                assert f is not None
                out.append(orjson.loads(f.read()))
                if len(out) == n:
                    break
    return out


def export_rate(c: httpx.Client) -> tuple[int, float]:
    start = time.perf_counter()
    r = c.get("/$export", headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
    assert r.status_code == 202, r.text
    status = r.headers["content-location"]
    while (r := c.get(status)).status_code == 202:
        time.sleep(0.02)
    assert r.status_code == 200, r.text
    count = 0
    for item in r.json()["output"]:
        with c.stream("GET", item["url"]) as f:
            for line in f.iter_lines():
                if line:
                    count += 1
    return count, time.perf_counter() - start


def search_rate(c: httpx.Client, types: list[str]) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    for res_type in types:
        r = c.get(f"/{res_type}", params={"_count": "1000"})
        while True:
            assert r.status_code == 200, r.text
            bundle = r.json()
            count += len(bundle.get("entry", []))
            nxt = [x["url"] for x in bundle.get("link", []) if x["relation"] == "next"]
            if not nxt:
                break
            r = c.get(nxt[0])
    return count, time.perf_counter() - start


def select_rate(url: str, *, as_text: bool) -> tuple[int, float]:
    """Every current resource by pk, 1000 a query: decoded and re-encoded, or as JSON text."""
    column = sa.cast(resource.c.content, sa.Text) if as_text else resource.c.content
    engine = create_engine(url)
    try:
        start = time.perf_counter()
        count = 0
        with engine.connect() as conn:
            after = 0
            while True:
                rows = conn.execute(
                    sa.select(resource.c.pk, column.label("content"))
                    .where(~resource.c.deleted, resource.c.pk > after)
                    .order_by(resource.c.pk)
                    .limit(1000)
                ).all()
                if not rows:
                    break
                for row in rows:
                    if as_text:
                        row.content.encode()
                    else:
                        orjson.dumps(row.content)
                count += len(rows)
                after = rows[-1].pk
        return count, time.perf_counter() - start
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    with database(args.backend) as url, hearth(url) as server:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=300) as c:
            start = time.perf_counter()
            loaded = 0
            kinds: set[str] = set()
            for bundle in synthea(args.patients):
                kinds |= {e["resource"]["resourceType"] for e in bundle["entry"]}
                r = c.post("", json=bundle, headers={"Prefer": "return=minimal"})
                assert r.status_code == 200, r.text[:2000]
                loaded += len(bundle["entry"])
            load_s = time.perf_counter() - start
            types = sorted(kinds)
            export_rate(c)  # warm: validators, connections, page cache
            n_export, t_export = export_rate(c)
            n_search, t_search = search_rate(c, types)
            n_select, t_select = select_rate(url, as_text=False)
            n_text, t_text = select_rate(url, as_text=True)
        assert n_export == n_search, (n_export, n_search)
        print(
            f"Bulk Data export on {args.backend}: {args.patients} Synthea patients, "
            f"{n_export} resources of {len(types)} types (loaded at {loaded / load_s:.0f}/s)"
        )
        print(f"  raw SELECT content, decode + encode   {n_select / t_select:9.0f} resources/s")
        print(f"  raw SELECT content as JSON text       {n_text / t_text:9.0f} resources/s")
        print(f"  baseline: search paging, _count=1000  {n_search / t_search:9.0f} resources/s")
        print(
            f"  $export kick-off -> files downloaded  {n_export / t_export:9.0f} resources/s  "
            f"({(n_export / t_export) / (n_search / t_search):.2f}x search)"
        )


if __name__ == "__main__":
    main()
