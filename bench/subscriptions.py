"""Subscription delivery: latency from a write to its rest-hook notification at 1 and 100 active
subscriptions, and writes/s with 100 active subscriptions against writes/s with none, in one run.

    .venv/bin/python bench/subscriptions.py [--backend postgresql|sqlite] [--writes 200]

Starts `hearth serve` and `hearth worker --no-ai` on a throwaway database and a local HTTP
receiver (this process). Every write is a POST of an Observation; the subscriptions' criteria
match every one of them (``Observation?code=...``), payload ``application/fhir+json``.

Latency is measured from the moment the client sends the write to the moment the receiver has
the notification: an upper bound of commit-to-receipt (it includes the write's own round trip,
printed beside it). Writes/s: one client, writes back to back, with no subscription (baseline,
measured first and again last, with the subscriptions deleted: the machine's drift shows),
with 100 subscriptions that match nothing (the cost of matching), and with 100 that match every
write (matching, outbox rows and the worker delivering 100 notifications per write on the same
machine).

Beside each writes/s figure it prints the CPU time the server (with its database connections'
client side, not PostgreSQL itself), the worker and this process (the client and the receiver)
used per write, read from /proc: on the shared 2-core machine the ratios move with other
people's load, the CPU per write much less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, hearth, process, stop  # noqa: E402

LOINC = "http://loinc.org"
SETTINGS = {
    "HEARTH_SUBSCRIPTION_ALLOW_HTTP": "true",
    "HEARTH_SUBSCRIPTION_ENDPOINTS": "http://127.0.0.1:",
}


class Receiver:
    """Records when each (subscription path, focus id) notification arrived."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                if self.headers.get("X-Hearth-Notification") == "event-notification":
                    entries = json.loads(body)["entry"]
                    key = (self.path, entries[1]["resource"]["id"])
                    with receiver.cond:
                        receiver.seen.setdefault(key, now)
                        receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{n}"

    def wait(self, keys: list[tuple[str, str]], timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(k in self.seen for k in keys):
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    missing = [k for k in keys if k not in self.seen]
                    raise RuntimeError(f"{len(missing)} notifications never arrived")
            return {k: self.seen[k] for k in keys}


def observation(code: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
    }


def subscribe(fhir: httpx.Client, rx: Receiver, n: int, code: str) -> str:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": f"Observation?code={LOINC}|{code}",
        "channel": {"type": "rest-hook", "endpoint": rx.url(n), "payload": "application/fhir+json"},
    }
    answer = fhir.post("/Subscription", json=body)
    answer.raise_for_status()
    return answer.json()["id"]


def wait_active(fhir: httpx.Client, ids: list[str]) -> None:
    deadline = time.monotonic() + 300
    for sub_id in ids:
        while fhir.get(f"/Subscription/{sub_id}").json()["status"] != "active":
            if time.monotonic() > deadline:
                raise RuntimeError(f"Subscription/{sub_id} never became active")
            time.sleep(0.05)


def latencies(fhir: httpx.Client, rx: Receiver, code: str, paths: list[str], writes: int) -> tuple:
    """(notification latencies ms, write round trips ms) for ``writes`` spaced writes."""
    lat, rtt = [], []
    for _ in range(writes):
        start = time.perf_counter()
        made = fhir.post("/Observation", json=observation(code))
        rtt.append((time.perf_counter() - start) * 1000)
        rid = made.json()["id"]
        got = rx.wait([(p, rid) for p in paths])
        lat.extend((t - start) * 1000 for t in got.values())
        time.sleep(0.02)
    return lat, rtt


def throughput(fhir: httpx.Client, code: str, writes: int) -> float:
    start = time.perf_counter()
    for _ in range(writes):
        fhir.post("/Observation", json=observation(code)).raise_for_status()
    return writes / (time.perf_counter() - start)


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the processes of process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ... utime, stime
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU milliseconds per write of the server and the worker over a phase."""

    def __init__(self, server: int, worker: int | None) -> None:
        self.pids = (server, worker)
        self.start = self._now()

    def _now(self) -> tuple[float, float, float]:
        server, worker = self.pids
        return (
            cpu_seconds(server),
            cpu_seconds(worker) if worker else 0.0,
            time.process_time(),  # this process: the client and the receiver
        )

    def per_write(self, writes: int) -> str:
        (s0, w0, b0), (s1, w1, b1) = self.start, self._now()
        return (
            f"CPU/write: server {(s1 - s0) * 1000 / writes:5.1f} ms,"
            f" worker {(w1 - w0) * 1000 / writes:5.1f} ms,"
            f" bench (client + receiver) {(b1 - b0) * 1000 / writes:5.1f} ms"
        )


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="postgresql", choices=["postgresql", "sqlite"])
    ap.add_argument("--writes", type=int, default=200, help="writes per throughput figure")
    ap.add_argument("--latency-writes", type=int, default=50)
    args = ap.parse_args()
    rx = Receiver()
    with database(args.backend) as url, hearth(url, env=SETTINGS) as server:
        worker_env = {**server.env, **SETTINGS}
        hearth_cli = [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "worker",
            "--no-ai",
            "--interval",
            "3600",
        ]
        with (
            process(hearth_cli, worker_env) as worker,
            httpx.Client(base_url=server.fhir, headers=server.headers, timeout=120) as fhir,
        ):
            throughput(fhir, "warm-up", 50)  # validators compiled, caches and pools filled
            cpu = Cpu(server.proc.pid, worker.pid)
            base_ws = throughput(fhir, f"none-{uuid.uuid4().hex[:6]}", args.writes)
            base_cpu = cpu.per_write(args.writes)

            code = f"c-{uuid.uuid4().hex[:8]}"
            one = [subscribe(fhir, rx, 0, code)]
            wait_active(fhir, one)
            lat1, rtt1 = latencies(fhir, rx, code, ["/hook/0"], args.latency_writes)

            # 99 more on the same criteria: 100 active subscriptions matching every write
            more = [subscribe(fhir, rx, n, code) for n in range(1, 100)]
            wait_active(fhir, more)
            paths = [f"/hook/{n}" for n in range(100)]
            n100 = max(10, args.latency_writes // 5)
            cpu = Cpu(server.proc.pid, worker.pid)
            lat100, rtt100 = latencies(fhir, rx, code, paths, n100)
            lat_cpu = cpu.per_write(n100)

            # 100 that match nothing written next (matching cost alone)
            other = f"o-{uuid.uuid4().hex[:8]}"
            cpu = Cpu(server.proc.pid, worker.pid)
            quiet_ws = throughput(fhir, other, args.writes)
            quiet_cpu = cpu.per_write(args.writes)
            # 100 that match every write (plus delivery of 100 notifications per write)
            cpu = Cpu(server.proc.pid, worker.pid)
            busy_ws = throughput(fhir, code, args.writes)
            busy_cpu = cpu.per_write(args.writes)
            # what the worker still had to send when the writes ended, and how long it took
            last = fhir.get(
                "/Observation",
                params={"code": f"{LOINC}|{code}", "_count": 1, "_sort": "-_lastUpdated"},
            ).json()
            tail_start = time.perf_counter()
            rx.wait([(p, last["entry"][0]["resource"]["id"]) for p in paths])
            tail_s = time.perf_counter() - tail_start
            tail_cpu = cpu.per_write(args.writes)
            # the same without the worker: the write path's own cost (matching + outbox rows)
            stop(worker)
            cpu = Cpu(server.proc.pid, None)
            alone_ws = throughput(fhir, code, args.writes)
            alone_cpu = cpu.per_write(args.writes)
            # the baseline again, the subscriptions deleted: the machine's drift during the run
            for sub_id in one + more:
                fhir.delete(f"/Subscription/{sub_id}").raise_for_status()
            end_ws = throughput(fhir, code, args.writes)
            base_ws, start_ws = (base_ws + end_ws) / 2, base_ws
    load = os.getloadavg()

    print(
        f"backend {args.backend}; {args.writes} writes per throughput figure, one client;"
        f" load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"writes/s, no subscriptions (baseline):         {base_ws:8.1f}"
        f"  (mean of {start_ws:.1f} first and {end_ws:.1f} last; ratios below against it)"
        f"  {base_cpu}"
    )
    print(
        f"writes/s, 100 subscriptions matching none:      {quiet_ws:8.1f}  ({quiet_ws / base_ws:.2f}x)"
        f"  {quiet_cpu}"
    )
    print(
        f"writes/s, 100 subscriptions matching each:      {busy_ws:8.1f}  ({busy_ws / base_ws:.2f}x)"
        f"  {busy_cpu}  (worker delivering 100 notifications per write)"
    )
    print(
        f"   the worker's backlog when the writes ended took {tail_s:.2f} s more; with it"
        f" {tail_cpu}"
    )
    print(
        f"writes/s, 100 matching each, worker stopped: {alone_ws:8.1f}  ({alone_ws / base_ws:.2f}x)"
        f"  {alone_cpu}  (the write path alone: matching and one outbox row per write)"
    )
    print(
        f"1 subscription:   write-to-receipt p50 {pct(lat1, 50):6.1f} ms  p95 {pct(lat1, 95):6.1f} ms"
        f"  (the write's own round trip p50 {pct(rtt1, 50):.1f} ms)"
    )
    print(
        f"100 subscriptions: write-to-receipt p50 {pct(lat100, 50):6.1f} ms  p95 {pct(lat100, 95):6.1f} ms"
        f"  ({len(lat100)} notifications; write round trip p50 {pct(rtt100, 50):.1f} ms)  {lat_cpu}"
    )


if __name__ == "__main__":
    main()
