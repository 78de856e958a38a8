"""What a sweep's saved validation logits say, offline: each variant's seed ensemble and the
balanced accuracy of ``argmax(logits - delta * log prior)`` over a range of ``delta``.

``delta = 0`` is each run's own decision (its logit-adjusted training already subtracted the log
prior once, tau = 1); the scan shows whether a stronger or weaker adjustment would have served
balanced accuracy better, averaged over runs so that one lucky seed does not decide.

    .venv/bin/python -m inference.training.sweep_report docs/sweeps/skin-2026-11-26-recipes.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from inference.metrics import classification_report, softmax
from inference.registry import MODELS

DELTAS = (-0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6)


def balanced_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    decided = logits.argmax(1)
    present = np.unique(labels)
    return float(np.mean([np.mean(decided[labels == c] == c) for c in present]))


def report(logits: dict[str, np.ndarray], labels: np.ndarray, train_counts: list[int]) -> dict:
    """Per run and per variant (``<variant>-s<seed>`` names) ensemble figures, and the scan."""
    names = sorted(logits)
    display = tuple(str(i) for i in range(len(train_counts)))
    log_prior = np.log(np.asarray(train_counts, dtype=np.float64) / sum(train_counts))
    variants: dict[str, list[str]] = {}
    for name in names:
        variants.setdefault(name.rsplit("-s", 1)[0], []).append(name)

    def figures(z: np.ndarray) -> dict:
        full = classification_report(softmax(z), z.argmax(1), labels, display)
        return {"balanced_accuracy": round(full["balanced_accuracy"], 4),
                "macro_auc": round(full["macro_auc"], 4), "accuracy": round(full["accuracy"], 4)}  # fmt: skip

    scan = {name: [balanced_accuracy(logits[name] - d * log_prior, labels) for d in DELTAS]
            for name in names}  # fmt: skip
    return {
        "runs": {name: figures(logits[name]) for name in names},
        "ensembles": {
            variant: figures(np.mean([logits[n] for n in members], axis=0))
            for variant, members in variants.items()
        },
        "all_runs_ensemble": figures(np.mean([logits[n] for n in names], axis=0)),
        "deltas": list(DELTAS),
        "delta_scan": {name: [round(v, 4) for v in row] for name, row in scan.items()},
        "delta_scan_mean": [round(float(v), 4) for v in np.mean(list(scan.values()), axis=0)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logits", type=Path, help="a sweep's val_logits.npz")
    parser.add_argument(
        "--train-counts",
        type=int,
        nargs="+",
        default=None,
        help="training class counts (default: those recorded in the shipped skin.json)",
    )
    args = parser.parse_args(argv)
    with np.load(args.logits) as data:
        labels = data["labels"]
        logits = {k: data[k] for k in data.files if k != "labels"}
    counts = args.train_counts
    if counts is None:
        counts = json.loads(MODELS["skin"].metadata_path().read_text())["train_class_counts"]
    result = report(logits, labels, counts)
    for name, row in result["runs"].items():
        print(f"run      {name:<24} {row}")
    for name, row in result["ensembles"].items():
        print(f"ensemble {name:<24} {row}")
    print(f"ensemble {'(all runs)':<24} {result['all_runs_ensemble']}")
    print("delta    " + " ".join(f"{d:>6}" for d in result["deltas"]))
    print("mean bal " + " ".join(f"{v:>6.3f}" for v in result["delta_scan_mean"]))


if __name__ == "__main__":
    main()
