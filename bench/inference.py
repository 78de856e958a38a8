"""AI inference speed on this CPU: the models in-process, then upload → Observation through a
running Hearth and `hearth worker`, each next to its baseline measured in the same run.

    .venv/bin/python bench/inference.py [--quick] [--e2e-only] [--runs 50] [--uploads 30]
                                        [--poll 1.0] [--no-compare]

1. In-process, per model (skin: the 600×450 ISIC photo; pneumonia: the 1955×1841 chest CR
   RG1_UNCR.dcm): batch-1 latency p50/p95 over ``--runs`` runs of decode (JPEG / DICOM with its
   LUTs) + pre-process (crop, resize) + predict (network with the model's test-time augmentation,
   calibration), and of Grad-CAM + overlay PNG (what the worker adds per image); throughput at
   batch 1, 16, 64 of pre-process + predict from decoded full-size images. Baseline: the bare
   network forward (no pre-processing, no TTA) on the same pre-processed inputs.
2. End to end on PostgreSQL: `hearth serve` (1 uvicorn worker) on a throwaway database and
   `hearth worker --poll 1.0` (the CLI default) in the background (logging on, to see its batch
   sizes), woken by PostgreSQL NOTIFY; then the same again with `hearth worker --no-notify`
   (polling only), the baseline of the wake-up. Skin photos are
   uploaded as Media over HTTP with a real bearer token; the upload's write hook creates the
   analysis Task in the same transaction. Latency = Task version 1 ``meta.lastUpdated`` →
   result Observation ``meta.lastUpdated`` (stamped in the transaction that commits it), with
   Grad-CAM heatmaps on (the default). First ``--uploads`` one at a time (each waited for), then
   a burst of ``--uploads`` sent concurrently. Baseline: the in-process skin latency from 1.
3. The worker's RSS (VmRSS, and peak VmHWM) after the run, and the issue's goals: skin and X-ray
   p95 < 300 ms on this CPU, worker RSS < 1.5 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, hearth, process  # noqa: E402
from inference.heatmap import grad_cam, overlay_png  # noqa: E402
from inference.images import dicom_image, open_photo, read_dicom  # noqa: E402
from inference.predict import load_model, network_logits  # noqa: E402
from inference.preprocess import preprocess  # noqa: E402
from tests.shared import shared_path  # noqa: E402

SKIN_PHOTOS = [
    shared_path("data", "skin_photos", "ISIC_0024872.jpg"),
    shared_path("data", "skin_photos", "ISIC_0024310.jpg"),
]
CHEST_CR = shared_path("data", "dicom", "RG1_UNCR.dcm")
GOAL_P95_MS = 300.0
GOAL_RSS_MB = 1536.0


def pct(xs: list[float], p: float) -> float:
    """p-th percentile in ms of durations in seconds (nearest rank)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def rate(fn, images_per_call: int, min_seconds: float, min_calls: int = 3) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < min_seconds:
        fn()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - t0)


# -- 1. in-process ---------------------------------------------------------------------------
def one_model(  # type: ignore[no-untyped-def]
    name: str, label: str, raw: list[bytes], decode, runs: int, batches: list[int], seconds: float
) -> dict:
    model = load_model(name)
    spec, tta = model.spec, model.metadata.get("tta", "none")
    image = decode(raw[0])
    batch = preprocess(image, size=spec.input_size, mode=spec.mode)
    for _ in range(5):  # warm-up (allocator, oneDNN primitives)
        model.predict(image)
        network_logits(model.network, batch)
    bare = timed(lambda: network_logits(model.network, batch), runs)
    pre = timed(lambda: preprocess(image, size=spec.input_size, mode=spec.mode), runs)
    pred = timed(lambda: model.predict(image), runs)
    full = timed(lambda: model.predict(decode(raw[0])), runs)
    labels = [int(model.predict(image).labels[0])]
    cams = grad_cam(model.network, batch, labels)
    cam = timed(lambda: grad_cam(model.network, batch, labels), runs)
    png = timed(lambda: overlay_png(image, cams[0]), min(runs, 20))  # slow: fewer runs
    rows = [
        ("bare forward, no TTA (baseline)", bare),
        ("pre-process (crop+resize)", pre),
        (f"pre-process + predict (TTA {tta})", pred),
        ("decode + pre-process + predict", full),
        ("Grad-CAM map", cam),
        (f"heatmap overlay PNG ({min(runs, 20)} runs)", png),
    ]
    for step, xs in rows:
        print(
            f"{name:<10}{label:<20}{step:<40}{min(xs) * 1000:>8.1f}{pct(xs, 50):>9.1f}"
            f"{pct(xs, 95):>9.1f}"
        )
    result: dict = {
        "p50": pct(full, 50),
        "p95": pct(full, 95),
        "min": min(full) * 1000,
        "cam50": pct(cam, 50) + pct(png, 50),
    }

    images = [decode(raw[i % len(raw)]) for i in range(max(batches))]
    tput = []
    for n in batches:
        some = images[:n]
        tensor = preprocess(some, size=spec.input_size, mode=spec.mode)
        full_rate = rate(lambda some=some: model.predict(some), n, seconds)
        bare_rate = rate(lambda t=tensor: network_logits(model.network, t), n, seconds)
        tput.append((n, full_rate, bare_rate))
    result["tput"] = tput
    return result


def in_process(runs: int, batches: list[int], seconds: float) -> dict[str, dict]:
    inputs = {
        "skin": (
            "600x450 JPEG",
            [p.read_bytes() for p in SKIN_PHOTOS],
            open_photo,
        ),
        "pneumonia": (
            "1955x1841 DICOM CR",
            [CHEST_CR.read_bytes()],
            lambda data: dicom_image(read_dicom(data)),
        ),
    }
    summary: dict[str, dict] = {}
    print(
        f"\n# 1. in-process, batch 1, {runs} runs each, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (load {load()})"
    )
    print(f"{'model':<10}{'input':<20}{'step':<40}{'min ms':>8}{'p50 ms':>9}{'p95 ms':>9}")
    for name, (label, raw, decode) in inputs.items():
        summary[name] = one_model(name, label, raw, decode, runs, batches, seconds)
    print(f"\n# throughput, images/s, from decoded full-size images (load {load()})")
    print(f"{'model':<10}{'batch':>6}{'pre+predict/s':>15}{'bare fwd/s':>12}{'ratio':>7}"
          f"{'gain vs b1':>12}")  # fmt: skip
    for name, s in summary.items():
        base = s["tput"][0][1]
        for n, full_rate, bare_rate in s["tput"]:
            print(
                f"{name:<10}{n:>6}{full_rate:>15.1f}{bare_rate:>12.1f}"
                f"{full_rate / bare_rate:>7.2f}{full_rate / base:>11.2f}x"
            )
    return summary


# -- 2. end to end ---------------------------------------------------------------------------
def media(patient: str, data: str) -> dict:
    return {
        "resourceType": "Media",
        "status": "completed",
        "modality": {
            "coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "XC"}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "createdDateTime": "2026-11-20T10:00:00Z",
        "content": {"contentType": "image/jpeg", "data": data},
    }


def ts(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of ``pid`` and its children."""
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    now = peak = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    now += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
        except FileNotFoundError:
            pass
    return now / 1024, peak / 1024


class Client:
    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base, self.headers = base, headers
        self.http = httpx.Client(base_url=base, headers=headers, timeout=120)

    def upload(self, patient: str, data: str) -> str:
        r = self.http.post("/Media", json=media(patient, data))
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def task_for(self, media_id: str) -> str:
        r = self.http.get("/Task", params={"focus": f"Media/{media_id}"})
        [entry] = r.json()["entry"]
        return entry["resource"]["id"]

    def statuses(self, task_ids: list[str]) -> dict[str, str]:
        found = {}
        for start in range(0, len(task_ids), 50):
            chunk = task_ids[start : start + 50]
            r = self.http.get("/Task", params={"_id": ",".join(chunk), "_count": "100"})
            assert r.status_code == 200, r.text
            for e in r.json().get("entry", []):
                found[e["resource"]["id"]] = e["resource"]["status"]
        return found

    def wait(self, task_ids: list[str], timeout: float, every: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.statuses(task_ids)
            if all(st.get(t) in ("completed", "failed") for t in task_ids):
                bad = [t for t in task_ids if st[t] != "completed"]
                assert not bad, f"tasks failed: {bad}"
                return
            time.sleep(every)
        raise TimeoutError(f"tasks not done in {timeout} s")

    def latency(self, task_id: str) -> tuple[float, float, float]:
        """(created, started, observation committed) as epoch seconds, from the server's
        meta.lastUpdated of Task version 1, the Task's in-progress version and the result."""
        v1 = self.http.get(f"/Task/{task_id}/_history/1").json()
        hist = self.http.get(f"/Task/{task_id}/_history").json()
        started = min(
            ts(e["resource"]["meta"]["lastUpdated"])
            for e in hist["entry"]
            if e["resource"]["status"] == "in-progress"
        )
        done = next(e["resource"] for e in hist["entry"] if e["resource"]["status"] == "completed")
        ref = next(o["valueReference"]["reference"] for o in done["output"]
                   if o["type"]["text"] == "result")  # fmt: skip
        obs = self.http.get(f"/{ref}").json()
        return ts(v1["meta"]["lastUpdated"]), started, ts(obs["meta"]["lastUpdated"])


def burst_upload(base: str, headers: dict, patient: str, photos: list[str], n: int) -> list[str]:
    async def go() -> list[str]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=120, limits=limits
        ) as c:

            async def one(i: int) -> str:
                r = await c.post("/Media", json=media(patient, photos[i % len(photos)]))
                assert r.status_code == 201, r.text
                return r.json()["id"]

            return list(await asyncio.gather(*(one(i) for i in range(n))))

    return asyncio.run(go())


def end_to_end(uploads: int, poll: float, batch_size: int, notify: bool = True) -> dict:
    log_path = Path(tempfile.mkstemp(prefix="hearth-bench-worker-", suffix=".log")[1])
    out: dict = {}
    # `hearth worker`, with INFO logging so that its "claimed N analysis job(s)" lines show.
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, "
        "format='%(created).6f %(name)s %(message)s'); "
        "from fhir_server.cli import main; "
        f"sys.argv = ['hearth', 'worker', '--poll', '{poll}', "
        f"'{'--notify' if notify else '--no-notify'}']; main()"
    )
    settings = {"HEARTH_WORKERS": "1", "HEARTH_WORKER_BATCH_SIZE": str(batch_size)}
    try:
        with (
            database() as url,
            hearth(url, env=settings) as server,
            log_path.open("w") as log,
            process([sys.executable, "-c", code], server.env, stdout=log) as worker,
        ):
            base, headers = server.fhir, server.headers
            client = Client(base, headers)
            r = client.http.post(
                "/Patient", json={"resourceType": "Patient", "name": [{"family": "Bench"}]}
            )
            assert r.status_code == 201, r.text
            patient = r.json()["id"]
            photos = [base64.b64encode(p.read_bytes()).decode() for p in SKIN_PHOTOS]

            # Warm-up: the worker loads the model on its first job (timed: the cold start).
            t0 = time.perf_counter()
            first = client.task_for(client.upload(patient, photos[0]))
            client.wait([first], 300, 0.05)
            cold = time.perf_counter() - t0
            warm_ids = [client.task_for(client.upload(patient, photos[1]))]
            client.wait(warm_ids, 120, 0.05)
            out["cold_s"] = cold

            wake = "LISTEN/NOTIFY" if notify else "polling only, --no-notify"
            print(f"\n# 2. end to end, skin, PostgreSQL, 1 uvicorn worker + 1 `hearth worker` "
                  f"(poll {poll} s, {wake}, batch {batch_size}, Grad-CAM on) (load {load()})")  # fmt: skip
            seq_ids, seq_client = [], []
            for i in range(uploads):
                t0 = time.perf_counter()
                tid = client.task_for(client.upload(patient, photos[i % 2]))
                client.wait([tid], 120, 0.02)
                seq_client.append(time.perf_counter() - t0)
                seq_ids.append(tid)
            log_mark = log_path.stat().st_size
            t0 = time.perf_counter()
            media_ids = burst_upload(base, headers, patient, photos, uploads)
            sent = time.perf_counter() - t0
            burst_ids = [client.task_for(m) for m in media_ids]
            client.wait(burst_ids, 300, 0.1)
            burst_wall = time.perf_counter() - t0

            def lat(ids: list[str]) -> tuple[list[float], list[float], list[float], float]:
                rows = [client.latency(t) for t in ids]
                total = [o - c for c, _, o in rows]
                queued = [s - c for c, s, _ in rows]
                run = [o - s for _, s, o in rows]
                span = max(o for *_, o in rows) - min(c for c, *_ in rows)
                return total, queued, run, span

            seq = lat(seq_ids)
            burst = lat(burst_ids)
            with log_path.open("rb") as handle:
                handle.seek(log_mark)
                tail = handle.read().decode(errors="replace")
            batches = [int(m) for m in re.findall(r"claimed (\d+) analysis job", tail)]
            forwards = [int(m) for m in re.findall(r"(\d+) input\(s\) in one forward pass", tail)]
            print(f"{'phase':<26}{'n':>4}{'min ms':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
                  f"{'wait p50':>10}{'run p50':>9}{'span s':>8}{'tasks/s':>9}")  # fmt: skip
            for label, (total, queued, run, span) in (
                ("one at a time", seq),
                (f"burst of {uploads}", burst),
            ):
                print(
                    f"{label:<26}{len(total):>4}{min(total) * 1000:>8.0f}{pct(total, 50):>9.0f}"
                    f"{pct(total, 95):>9.0f}{max(total) * 1000:>9.0f}{pct(queued, 50):>10.0f}{pct(run, 50):>9.0f}"
                    f"{span:>8.2f}{len(total) / span:>9.2f}"
                )
            print(
                "  (Task created → Observation committed, server timestamps; wait = created → "
                "claimed/in-progress, run = in-progress → Observation)"
            )
            print(
                f"  one at a time, client-side upload → completion seen: p50 "
                f"{pct(seq_client, 50):.0f} ms, p95 {pct(seq_client, 95):.0f} ms"
            )
            print(
                f"  burst: {uploads} uploads sent in {sent:.2f} s, all completed "
                f"{burst_wall:.2f} s after the first was sent; worker batch sizes {batches}, "
                f"forward passes of {forwards} images"
            )
            print(
                f"  cold start (first upload → completion seen, model load included): {cold:.1f} s"
            )
            out.update(seq=seq, burst=burst, batches=batches)
            out["rss"] = rss(worker.pid)
            out["worker_pid"] = worker.pid
            return out
    finally:
        log_path.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="20 runs, 10 uploads, batch 1 and 16")
    ap.add_argument("--e2e-only", action="store_true", help="skip part 1 (in-process)")
    ap.add_argument("--runs", type=int, default=50, help="batch-1 latency runs per step")
    ap.add_argument("--uploads", type=int, default=30, help="uploads per end-to-end phase")
    ap.add_argument("--poll", type=float, default=1.0, help="`hearth worker --poll` seconds")
    ap.add_argument(
        "--no-compare", action="store_true", help="skip the `--no-notify` end-to-end baseline"
    )
    ap.add_argument("--batch-size", type=int, default=16, help="HEARTH_WORKER_BATCH_SIZE")
    ap.add_argument("--seconds", type=float, default=1.5, help="seconds per throughput point")
    args = ap.parse_args()
    batches = [1, 16, 64]
    if args.quick:
        args.runs, args.uploads, args.seconds, batches = 20, 10, 0.5, [1, 16]

    # A SIGTERM stops the run through the finally blocks (servers stopped, database dropped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    print(
        f"# Hearth AI inference benchmark — {os.cpu_count()} CPU cores, "
        f"{datetime.now().astimezone().isoformat(timespec='seconds')}, load average {load()}"
    )
    models = None if args.e2e_only else in_process(args.runs, batches, args.seconds)
    e2e = end_to_end(args.uploads, args.poll, args.batch_size, notify=True)
    polled = (
        None
        if args.no_compare
        else end_to_end(args.uploads, args.poll, args.batch_size, notify=False)
    )

    seq_total = e2e["seq"][0]
    burst_total = e2e["burst"][0]
    if polled is not None:
        print(f"\n# wake-up: LISTEN/NOTIFY against polling only (--poll {args.poll}), same run")
        print("  (Task created → Observation committed, and its queue wait: created → claimed)")
        print(f"{'phase':<26}{'NOTIFY p50':>11}{'p95 ms':>8}{'polling p50':>13}{'p95 ms':>8}"
              f"{'wait NOTIFY p50':>17}{'p95':>6}{'wait polling p50':>18}{'p95':>6}")  # fmt: skip
        for phase, n, p in (
            ("one at a time", e2e["seq"], polled["seq"]),
            (f"burst of {args.uploads}", e2e["burst"], polled["burst"]),
        ):
            print(
                f"{phase:<26}{pct(n[0], 50):>11.0f}{pct(n[0], 95):>8.0f}{pct(p[0], 50):>13.0f}"
                f"{pct(p[0], 95):>8.0f}{pct(n[1], 50):>17.0f}{pct(n[1], 95):>6.0f}"
                f"{pct(p[1], 50):>18.0f}{pct(p[1], 95):>6.0f}"
            )
    now, peak = e2e["rss"]
    if models is not None:
        skin = models["skin"]
        print(f"\n# baseline comparison (load {load()})")
        in_proc = skin["p50"] + skin["cam50"]
        print(
            f"skin in-process p50: decode+pre-process+predict {skin['p50']:.0f} ms + Grad-CAM "
            f"and overlay PNG {skin['cam50']:.0f} ms = {in_proc:.0f} ms (baseline); end to end "
            f"one at a time p50 {pct(seq_total, 50):.0f} ms "
            f"({pct(seq_total, 50) / in_proc:.1f}x), burst p50 {pct(burst_total, 50):.0f} ms "
            f"({pct(burst_total, 50) / in_proc:.1f}x)"
        )
    print(f"\n# 3. worker RSS after the run: {now:.0f} MB (peak {peak:.0f} MB)")
    print("# goals")
    for name in ("skin", "pneumonia") if models is not None else ():
        p95 = models[name]["p95"]  # type: ignore[index]
        ok = "met" if p95 < GOAL_P95_MS else "NOT met"
        print(f"{name:<10} in-process p95 {p95:.0f} ms (decode+pre-process+predict) "
              f"< {GOAL_P95_MS:.0f} ms: {ok}")  # fmt: skip
    e2e95 = pct(seq_total, 95)
    print(
        f"skin end to end (one at a time, with Grad-CAM, --poll {args.poll}) p95 {e2e95:.0f} ms "
        f"< {GOAL_P95_MS:.0f} ms: {'met' if e2e95 < GOAL_P95_MS else 'NOT met'}"
    )
    print(f"worker RSS {now:.0f} MB < {GOAL_RSS_MB:.0f} MB: "
          f"{'met' if now < GOAL_RSS_MB else 'NOT met'}")  # fmt: skip
    print(f"# total {time.perf_counter() - started:.0f} s, load average at the end {load()}")


if __name__ == "__main__":
    main()
