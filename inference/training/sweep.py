"""Run several recipe variants × seeds of one training script in parallel and compare them.

Each run is the training script's own command line (``--set`` overrides, its own output folder),
so every figure is reproducible by that command alone. The sweep ranks the variants by their mean
validation balanced accuracy + macro AUC over the seeds (not by their best seed), and writes
everything a later look needs without the machine that ran it:

- ``summary.json``: per run its variant, seed, command, seconds, validation report and history;
  per variant the mean and spread over seeds;
- ``val_logits.npz``: every finished run's validation logits (8-view TTA, from its saved float16
  weights) and the labels, so ensembles and decision rules can be studied offline;
- ``weights-<run>.pt`` / ``.json`` for the ``--keep`` best runs of the best variant.

    .venv/bin/python -m inference.training.sweep --script train_skin --device cuda \\
        --variant base --variant cutmix=cutmix_alpha=1.0,mix_prob=0.5 --seeds 11 7 --out /tmp/sweep

Runs still going at ``--deadline`` seconds are stopped and reported as unfinished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from inference.networks import build_network
from inference.registry import MODELS
from inference.training.common import REPO, evaluate, load_split

# training script -> the model it trains (each model names its script: spec.training)
SCRIPTS = {spec.training.rsplit(".", 1)[1]: name for name, spec in MODELS.items() if spec.training}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``name`` or ``name=key=value,key=value`` → (name, ["key=value", ...])."""
    name, _, rest = text.partition("=")
    return name, [pair for pair in rest.split(",") if pair]


def run_command(script: str, out: Path, device: str, pairs: list[str], seed: int) -> list[str]:
    command = [sys.executable, "-m", f"inference.training.{script}", "--out", str(out)]
    command += ["--device", device, "--set", f"seed={seed}", "--set", "threads=1"]
    for pair in pairs:
        key, _, value = pair.partition("=")
        command += ["--epochs", value] if key == "epochs" else ["--set", pair]
    return command


def validation_logits(spec, run_dir: Path, data: Path, metadata: dict, device: str) -> np.ndarray:
    """The run's validation logits from its saved float16 weights, as they will be served."""
    network = build_network(metadata["network"]).to(device)
    state = torch.load(spec.weights_path(run_dir), map_location=device, weights_only=True)
    network.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    )
    images, labels = load_split(data, spec, "val")
    return evaluate(network, images, labels, spec.labels, 0.0, metadata["tta"])[0]


def score(report: dict) -> float:
    return report["balanced_accuracy"] + report["macro_auc"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="train_skin")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME[=K=V,...]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 7, 20240611])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds")
    parser.add_argument("--keep", type=int, default=2, help="weights kept from the best variant")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None, help="run folders; default OUT/runs")
    parser.add_argument("--data", type=Path, default=None, help="the script's default if omitted")
    parser.add_argument(
        "--holdout", default=None, help="passed to the script (a split file, or 'none')"
    )
    args = parser.parse_args(argv)

    spec = MODELS[SCRIPTS[args.script]]
    work = args.work or args.out / "runs"
    work.mkdir(parents=True, exist_ok=True)
    queue = []
    for text in args.variant:
        name, pairs = parse_variant(text)
        for seed in args.seeds:
            run = f"{name}-s{seed}"
            command = run_command(args.script, work / run, args.device, pairs, seed)
            if args.data is not None:
                command += ["--data", str(args.data)]
            if args.holdout is not None:
                command += ["--holdout", str(args.holdout)]
            queue.append({"run": run, "variant": name, "pairs": pairs, "seed": seed,
                          "command": command})  # fmt: skip

    started = time.time()
    running: dict[str, tuple[subprocess.Popen, dict, float]] = {}
    finished: list[dict] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    while queue or running:
        while queue and len(running) < args.parallel:
            job = queue.pop(0)
            log = open(work / f"{job['run']}.log", "w")
            process = subprocess.Popen(job["command"], cwd=REPO, stdout=log, stderr=log, env=env)
            running[job["run"]] = (process, job, time.time())
        time.sleep(1.0)
        overdue = time.time() - started > args.deadline
        for run, (process, job, begun) in list(running.items()):
            if overdue and process.poll() is None:
                process.kill()
                process.wait()
            code = process.poll()
            if code is None:
                continue
            del running[run]
            job = {**job, "returncode": code, "seconds": round(time.time() - begun, 1)}
            metadata_path = spec.metadata_path(work / run)
            if code == 0 and metadata_path.exists():
                job["metadata"] = json.loads(metadata_path.read_text())
            print(json.dumps({k: job[k] for k in ("run", "returncode", "seconds")}), flush=True)
            finished.append(job)
        if overdue:
            for job in queue:
                finished.append({**job, "returncode": None, "seconds": 0})
            queue.clear()

    done = [job for job in finished if "metadata" in job]
    data = args.data
    logits = {}
    for job in done:
        metadata = job["metadata"]
        data = data or REPO / metadata["data_file"]
        logits[job["run"]] = validation_logits(spec, work / job["run"], data, metadata, args.device)
    variants: dict[str, dict] = {}
    for job in done:
        report = job["metadata"]["val"]
        entry = variants.setdefault(job["variant"], {"pairs": job["pairs"], "runs": []})
        entry["runs"].append(
            {"run": job["run"], "balanced_accuracy": report["balanced_accuracy"],
             "macro_auc": report["macro_auc"], "accuracy": report["accuracy"],
             "ece_after": report["ece_after"], "seconds": job["seconds"]}
        )  # fmt: skip
    for entry in variants.values():
        for key in ("balanced_accuracy", "macro_auc", "accuracy", "ece_after"):
            values = [run[key] for run in entry["runs"]]
            entry[f"mean_{key}"] = round(statistics.fmean(values), 4)
            entry[f"sd_{key}"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
    ranking = sorted(
        variants,
        key=lambda v: -(variants[v]["mean_balanced_accuracy"] + variants[v]["mean_macro_auc"]),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "script": args.script,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(args.device),
        "seconds": round(time.time() - started, 1),
        "ranking": ranking,
        "variants": variants,
        "runs": [
            {
                **{k: v for k, v in job.items() if k != "command"},
                "command": " ".join(job["command"][1:]),
            }
            for job in finished
        ],  # fmt: skip
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if logits:
        labels = load_split(data, spec, "val")[1].numpy()
        # The keys are run names, never savez's own allow_pickle (mypy checks **logits against it).
        np.savez_compressed(args.out / "val_logits.npz", labels=labels, **logits)  # type: ignore[arg-type]
    if ranking:
        best = sorted(variants[ranking[0]]["runs"], key=lambda run: -score(run))[: args.keep]
        for run in best:
            shutil.copy(spec.weights_path(work / run["run"]), args.out / f"weights-{run['run']}.pt")
            shutil.copy(
                spec.metadata_path(work / run["run"]), args.out / f"weights-{run['run']}.json"
            )
    for name in ranking:
        entry = variants[name]
        print(
            f"{name:>16}  n={len(entry['runs'])}  balanced accuracy {entry['mean_balanced_accuracy']:.3f}"
            f" ± {entry['sd_balanced_accuracy']:.3f}  macro AUC {entry['mean_macro_auc']:.3f}"
            f" ± {entry['sd_macro_auc']:.3f}  ({', '.join(str(r['balanced_accuracy']) for r in entry['runs'])})"
        )


if __name__ == "__main__":
    main()
