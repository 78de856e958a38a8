"""Run the SMART Bulk Data Tester (bdt, github.com/smart-on-fhir/bdt, Apache-2.0) against a
freshly started Hearth and print its summary.

    make bdt BDT_DIR=/path/to/bdt [BDT_BACKEND=sqlite] [BDT_ARGS='-P kick-off.test.js']
    .venv/bin/python bench/bdt.py --bdt-dir /path/to/bdt [--backend postgresql|sqlite]
                                  [--patients 5] [--keep-config DIR] [-- bdt test options]

Nothing is fetched at run time: ``--bdt-dir`` (default ``$BDT_DIR``, else ``../bdt`` beside
the repository) must be a checkout of bdt with its dependencies installed once
(``git clone https://github.com/smart-on-fhir/bdt && cd bdt && npm ci --omit=dev``; Node 20).
The repository's committed ``build/`` is what runs (``node build/lib/bin.js``).

What it sets up (docs/bulk-export.md "The Bulk Data Tester"): a throwaway database migrated to
head, ``hearth serve`` on a free port, ``--patients`` Synthea patients (../shared/synthea)
loaded through ``POST /fhir``, a Group of those patients for the group-level tests, and a SMART
Backend Services client (``confidential-asymmetric``, a fresh ES384 key: its public JWK Set is
served by a local HTTP server and registered by that URL, so bdt's "Authorization using JWKS URL"
test runs too — Hearth is started with ``HEARTH_JWKS_ALLOWED_HOSTS`` naming it and
``HEARTH_JWKS_ALLOW_HTTP`` — and the private JWK goes into bdt's config, written to a temporary
folder). Then bdt's
whole suite (or the part its options select) runs with its ``json`` reporter; each failed test
is printed with bdt's message, then the counts. The exit status is 1 when a test failed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
from joserfc.jwk import ECKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, hearth  # noqa: E402
from fhir_server.auth.clients import register  # noqa: E402
from fhir_server.runtime.settings import Settings  # noqa: E402
from resources.auth.store import AuthStore  # noqa: E402
from resources.storage.db import create_engine  # noqa: E402
from tests.shared import shared_path  # noqa: E402

# The most the bdt client may be granted: every read bdt asks for, in v1 and v2 syntax.
CLIENT_SCOPE = "system/*.read system/*.rs"
QUIET = {"HEARTH_LOG_LEVEL": "error"}  # bdt sends many requests that are meant to be refused


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


def load(c: httpx.Client, patients: int) -> list[str]:
    """Load ``patients`` Synthea bundles; the ids of the Patients they made."""
    ids = []
    for bundle in synthea(patients):
        r = c.post("", json=bundle)
        assert r.status_code == 200, r.text[:2000]
        for entry in r.json()["entry"]:
            location = entry["response"].get("location", "")
            if location.startswith("Patient/"):
                ids.append(location.split("/")[1])
    return ids


def document(c: httpx.Client, fhir: str, patient: str) -> None:
    """A DocumentReference with an inline attachment and one by absolute URL (a Binary), for
    bdt's attachment test (the Synthea bundles have none)."""
    text = base64.b64encode(b"Bulk Data Tester attachment\n").decode()
    r = c.post(
        "/Binary", json={"resourceType": "Binary", "contentType": "text/plain", "data": text}
    )
    assert r.status_code == 201, r.text
    binary = r.json()["id"]
    attachments = [
        {"contentType": "text/plain", "data": text},
        {"contentType": "text/plain", "url": f"{fhir}/Binary/{binary}"},
    ]
    r = c.post(
        "/DocumentReference",
        json={
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": a} for a in attachments],
        },
    )
    assert r.status_code == 201, r.text


class JwksServer:
    """The bdt client's public JWK Set over http on 127.0.0.1 (its registered JWKS URL)."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key(
            "P-384", parameters={"alg": "ES384", "use": "sig"}, auto_kid=True
        )
        body = json.dumps({"keys": [self.key.as_dict(private=False)]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {"HEARTH_JWKS_ALLOWED_HOSTS": self.host, "HEARTH_JWKS_ALLOW_HTTP": "true"}

    def close(self) -> None:
        self.httpd.shutdown()


def backend_client(url: str, jwks: JwksServer) -> tuple[str, dict]:
    """Register a Backend Services client by its JWK Set URL: (client id, private JWK)."""
    engine = create_engine(url)
    try:
        client_id, _ = register(
            AuthStore(engine),
            "SMART Bulk Data Tester",
            "confidential-asymmetric",
            scope=CLIENT_SCOPE,
            jwks_uri=jwks.url,
            settings=Settings(database_url=url, jwks_allowed_hosts=jwks.host, jwks_allow_http=True),
        )
    finally:
        engine.dispose()
    return client_id, jwks.key.as_dict(private=True)


def config(
    fhir: str, root: str, group: str, client_id: str, private_jwk: dict, jwks_url: str
) -> str:
    """bdt's configuration module (bdt's config-examples/template.js documents each field)."""
    cfg = {
        "baseURL": fhir,
        "groupExportEndpoint": f"Group/{group}/$export",
        "fastestResource": "Patient",
        "authentication": {
            "type": "backend-services",
            "optional": False,
            "tokenEndpoint": f"{root}/auth/token",
            "clientId": client_id,
            "privateKey": private_jwk,
            "scope": "system/*.read",
            "tokenSignAlgorithm": "ES384",
            "tokenExpiresIn": "5m",
            "jwksUrl": jwks_url,
        },
        "requests": {"strictSSL": True, "timeout": 30000},
    }
    return "module.exports = " + json.dumps(cfg, indent=2) + ";\n"


def run_bdt(bdt_dir: Path, config_path: Path, extra: list[str], raw: Path | None) -> list[dict]:
    """bdt's testEnd events (json reporter: one JSON object a line on stdout)."""
    cmd = ["node", str(bdt_dir / "build/lib/bin.js"), "test", "-c", str(config_path)]
    proc = subprocess.run(
        [*cmd, "-r", "json", *extra], cwd=bdt_dir, capture_output=True, text=True, timeout=1800
    )
    if raw:
        raw.write_text(proc.stdout)
    tests = []
    for line in proc.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "testEnd":
            tests.append(event["data"])
    if not tests:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit("bdt ran no test (see its output above)")
    return tests


# bdt tests that fail on Hearth for reasons of bdt's own (docs/bulk-export.md "The Bulk Data
# Tester"): printed as such, and they do not make the exit status 1.
NOT_APPLICABLE = {
    "Handles V1 scopes correctly": "bdt sends one client assertion (one jti) several times; "
    "SMART Backend Services: the server SHALL refuse a jti seen before",
    "Handles V2 scopes correctly": "the same: one assertion replayed",
    "Rejects explicit mutation V2 scopes": "the same: one assertion replayed",
    "Includes lenient errors in the payload errors array": "bdt looks for resourceType in the "
    "manifest's error items, which the IG defines as {type, url, count} file items",
    "Responds with 202 for active exports": "a race: bdt's one-day _since Patient export can be "
    "complete (200, as the IG says) by its first status request",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bdt-dir", default=os.environ.get("BDT_DIR") or str(ROOT.parent / "bdt"))
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--patients", type=int, default=5)
    ap.add_argument(
        "--keep-config", help="also write bdt's config.js and its raw output into this folder"
    )
    ap.add_argument(
        "--hold", action="store_true", help="set up, print bdt's command and wait (no run)"
    )
    ap.add_argument("bdt_args", nargs="*", help="more `bdt test` options (after --)")
    args = ap.parse_args()
    bdt_dir = Path(args.bdt_dir).resolve()
    if not (bdt_dir / "build/lib/bin.js").is_file() or not (bdt_dir / "node_modules").is_dir():
        raise SystemExit(
            f"no bdt checkout with its dependencies at {bdt_dir}: git clone "
            "https://github.com/smart-on-fhir/bdt there and run `npm ci --omit=dev` in it once "
            "(or pass --bdt-dir / BDT_DIR)"
        )
    jwks = JwksServer()
    with database(args.backend) as url, hearth(url, env={**QUIET, **jwks.env()}) as server:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=300) as c:
            patients = load(c, args.patients)
            r = c.post(
                "/Group",
                json={
                    "resourceType": "Group",
                    "type": "person",
                    "actual": True,
                    "name": "bdt",
                    "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patients],
                },
            )
            assert r.status_code == 201, r.text
            group = r.json()["id"]
            document(c, server.fhir, patients[0])
        client_id, private_jwk = backend_client(url, jwks)
        with tempfile.TemporaryDirectory(prefix="hearth-bdt-") as tmp:
            text = config(server.fhir, server.root, group, client_id, private_jwk, jwks.url)
            path = Path(tmp) / "config.js"
            path.write_text(text)
            if args.keep_config:
                Path(args.keep_config).mkdir(parents=True, exist_ok=True)
                (Path(args.keep_config) / "config.js").write_text(text)
            if args.hold:
                print(
                    f"Hearth at {server.fhir}; bdt's config: {path}\n  cd {bdt_dir} && "
                    f"node build/lib/bin.js test -c {path}\nCtrl-C (or SIGTERM) stops Hearth.",
                    flush=True,
                )
                # SIGTERM too (a backgrounded shell job ignores SIGINT): Hearth stopped, the
                # database dropped, on the way out
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                try:
                    server.proc.wait()
                except KeyboardInterrupt:
                    pass
                return
            raw = Path(args.keep_config) / "bdt.jsonl" if args.keep_config else None
            tests = run_bdt(bdt_dir, path, args.bdt_args, raw)
    counts = Counter(t.get("status", "?") for t in tests)
    unexpected = 0
    for t in tests:
        if t.get("status") == "failed":
            why = NOT_APPLICABLE.get(t.get("name", ""))
            unexpected += why is None
            note = f"  (not applicable: {why})" if why else ""
            print(f"FAILED  {t.get('path', '')}  {t.get('name', '')}{note}")
    print(
        f"bdt on Hearth ({args.backend}, {args.patients} Synthea patients): {len(tests)} tests: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {counts.get('failed', 0) - unexpected} of the failures not applicable"
    )
    if unexpected:
        print(
            "a failure's details: rerun with --hold and bdt's own console reporter: "
            "node build/lib/bin.js test -c CONFIG -m 'TEST NAME'"
        )
        raise SystemExit(1)


if __name__ == "__main__":
    main()
