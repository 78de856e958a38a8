"""Bulk Data import speed: resources/s of ``$import`` (kick-off to the 200 manifest) next to
``hearth load`` of the very same NDJSON files, in the same run, each into a fresh database of
the same backend.

    .venv/bin/python bench/bulk_import.py [--patients 5] [--backend postgresql|sqlite]

The data: ``--patients`` Synthea patient transaction Bundles (../shared/synthea), their
resources given the ids of their ``urn:uuid`` fullUrls (references rewritten to match) and
written as one NDJSON file per type. ``hearth load`` runs in this process (``load_paths``, the
command's own code: one transaction per resource, each audited). ``$import`` runs in a ``hearth
serve`` process (its API process runs the job) and fetches the files from a loopback HTTP server
in this process. Both first load a small warm-up set (one resource per type, other ids), so
neither pays for compiling validators in its timing.
"""

from __future__ import annotations

import argparse
import http.server
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bulk_export import synthea  # noqa: E402
from bench.harness import database, hearth  # noqa: E402


def _rewrite(node: object, types: dict[str, str]) -> object:
    if isinstance(node, dict):
        out = {k: _rewrite(v, types) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:") and ref[9:] in types:
            out["reference"] = f"{types[ref[9:]]}/{ref[9:]}"
        return out
    if isinstance(node, list):
        return [_rewrite(v, types) for v in node]
    return node


def write_ndjson(bundles: list[dict], folder: Path, prefix: str = "") -> dict[str, int]:
    """One NDJSON file per type in ``folder``; the count per type."""
    folder.mkdir(parents=True, exist_ok=True)
    types: dict[str, str] = {}
    for b in bundles:
        for e in b["entry"]:
            types[e["fullUrl"].removeprefix("urn:uuid:")] = e["resource"]["resourceType"]
    by_type: dict[str, list[bytes]] = {}
    for b in bundles:
        for e in b["entry"]:
            res = _rewrite(e["resource"], types)
            assert isinstance(res, dict)
            res["id"] = prefix + e["fullUrl"].removeprefix("urn:uuid:")
            by_type.setdefault(res["resourceType"], []).append(orjson.dumps(res))
    for res_type, lines in by_type.items():
        (folder / f"{res_type}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return {t: len(v) for t, v in by_type.items()}


def warm_set(bundles: list[dict], folder: Path) -> None:
    """One resource of each type, under other ids (references left dangling: not checked)."""
    seen: set[str] = set()
    lines: dict[str, bytes] = {}
    for b in bundles:
        for e in b["entry"]:
            res = e["resource"]
            if res["resourceType"] not in seen:
                seen.add(res["resourceType"])
                lines[res["resourceType"]] = orjson.dumps(
                    {**_strip_refs(res), "id": f"warm-{res['resourceType'].lower()}"}
                )
    folder.mkdir(parents=True, exist_ok=True)
    for res_type, line in lines.items():
        (folder / f"{res_type}.ndjson").write_bytes(line + b"\n")


def _strip_refs(node: dict) -> dict:
    out = _rewrite(node, {})
    assert isinstance(out, dict)
    return out


def load_rate(url: str, folder: Path, warm: Path) -> tuple[int, float]:
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.loader import load_paths
    from fhir_server.runtime.settings import Settings

    ctx = build_context(Settings(database_url=url, data_dir=Path(tempfile.mkdtemp())))
    try:
        load_paths(ctx, [warm], progress=False)
        start = time.perf_counter()
        summary = load_paths(ctx, [folder], progress=False)
        elapsed = time.perf_counter() - start
    finally:
        ctx.repo.engine.dispose()
    assert not summary.failed, summary.report()
    return sum(summary.counts.values()), elapsed


def serve_files(folder: Path) -> http.server.ThreadingHTTPServer:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=folder))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def import_once(c: httpx.Client, base: str, folder: Path, sub: str) -> tuple[int, float]:
    params: list[dict] = [{"name": "inputFormat", "valueCode": "application/fhir+ndjson"}]
    for path in sorted((folder / sub).glob("*.ndjson")):
        params.append(
            {
                "name": "input",
                "part": [
                    {"name": "type", "valueCode": path.stem},
                    {"name": "url", "valueUri": f"{base}/{sub}/{path.name}"},
                ],
            }
        )
    start = time.perf_counter()
    r = c.post(
        "/$import",
        json={"resourceType": "Parameters", "parameter": params},
        headers={"Prefer": "respond-async"},
    )
    assert r.status_code == 202, r.text
    status = r.headers["content-location"]
    while (r := c.get(status)).status_code == 202:
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.text
    manifest = r.json()
    assert not manifest["error"], manifest["error"]
    return sum(o["count"] for o in manifest["output"]), elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=5)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hearth-import-bench-"))
    bundles = synthea(args.patients)
    counts = write_ndjson(bundles, folder / "data")
    warm_set(bundles, folder / "warm")
    total = sum(counts.values())

    with database(args.backend) as url:
        n_load, t_load = load_rate(url, folder / "data", folder / "warm")

    httpd = serve_files(folder)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    env = {
        "HEARTH_IMPORT_ALLOWED_HOSTS": "127.0.0.1",
        "HEARTH_IMPORT_ALLOW_HTTP": "true",
        "HEARTH_LOG_LEVEL": "warning",
    }
    try:
        with database(args.backend) as url, hearth(url, env=env) as server:
            with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=300) as c:
                import_once(c, base, folder, "warm")
                n_import, t_import = import_once(c, base, folder, "data")
    finally:
        httpd.shutdown()
    assert n_load == n_import == total, (n_load, n_import, total)
    load = os.getloadavg()
    print(
        f"Bulk Data import on {args.backend}: {args.patients} Synthea patients, {total} "
        f"resources of {len(counts)} types as NDJSON (load average {load[0]:.1f} {load[1]:.1f})"
    )
    print(f"  baseline: hearth load (one transaction each)  {n_load / t_load:8.0f} resources/s")
    print(
        f"  $import kick-off -> manifest                 {n_import / t_import:8.0f} resources/s"
        f"  ({(n_import / t_import) / (n_load / t_load):.2f}x hearth load)"
    )


if __name__ == "__main__":
    main()
