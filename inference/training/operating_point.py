"""Choose each screening model's operating point on its validation split (no retraining).

For every model that declares a :class:`~inference.spec.Screening` (the skin model: malignancy =
melanoma + basal cell carcinoma + actinic keratosis / intraepithelial carcinoma), the shipped
weights predict the validation split exactly as the product does (:func:`inference.predict.
load_model`: same pre-processing, test-time augmentation, temperature and calibration offset);
the screening score is the sum of the positive classes' probabilities. The threshold is the
highest one whose validation sensitivity is at least the declared target; sensitivity,
specificity, PPV, NPV and the share referred at that threshold come with 95 % percentile
bootstrap intervals (lesions resampled with replacement; one image per lesion, so rows are
independent). The interval is for the fixed threshold: it leaves out the variance of choosing it.

    .venv/bin/python -m inference.training.operating_point            # every screening model
    .venv/bin/python -m inference.training.operating_point --model skin

Writes ``inference/weights/<model>.operating_point.json`` (read by the product beside the
model's metadata; its weights sha256 must match the shipped weights') and prints the model-card
table (docs/models.md, "Screening operating point").
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from inference.metrics import binary_auc
from inference.predict import load_model
from inference.registry import MODELS
from inference.spec import WEIGHTS_DIR, ImageClassifier
from inference.training.common import REPO, relative_to_repo

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261207
CAVEAT = (
    "Chosen and measured on the validation split, which also selected the training recipe, "
    "seed and decision rule (the 21-run sweep, docs/models.md): the figures are optimistic. "
    "The same threshold on the own untouched test split: "
    "python -m inference.training.evaluate --split own-test (docs/models.md)."
)


def screening_scores(probabilities: np.ndarray, spec: ImageClassifier) -> np.ndarray:
    """The summed probability of the screening's positive classes, per row."""
    assert spec.screening is not None
    columns = [spec.labels.index(label) for label in sorted(spec.screening.positive)]
    return np.asarray(probabilities, dtype=np.float64)[:, columns].sum(axis=1)


def choose_threshold(scores: np.ndarray, positive: np.ndarray, sensitivity: float) -> float:
    """The highest threshold t with mean(scores[positive] >= t) >= ``sensitivity``, rounded
    down to 6 decimals (so a stored threshold keeps every positive it counted)."""
    pos = np.sort(np.asarray(scores, dtype=np.float64)[positive.astype(bool)])[::-1]
    if len(pos) == 0:
        raise ValueError("no positive cases to choose a threshold on")
    needed = math.ceil(sensitivity * len(pos) - 1e-9)  # positives that must be at or above t
    return math.floor(float(pos[needed - 1]) * 1e6) / 1e6


def rates(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, float]:
    positive = positive.astype(bool)
    called = scores >= threshold
    tp = int((called & positive).sum())
    fp = int((called & ~positive).sum())
    fn = int((~called & positive).sum())
    tn = int((~called & ~positive).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "referred_share": ratio(tp + fp, len(scores)),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def bootstrap(
    scores: np.ndarray, positive: np.ndarray, threshold: float, resamples: int, seed: int
) -> dict[str, list[float]]:
    """95 % percentile intervals of the rates at the fixed threshold."""
    rng = np.random.default_rng(seed)
    keys = ("sensitivity", "specificity", "ppv", "npv", "referred_share")
    draws: dict[str, list[float]] = {k: [] for k in keys}
    n = len(scores)
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        r = rates(scores[pick], positive[pick], threshold)
        for k in keys:
            draws[k].append(r[k])
    return {
        k: [round(float(np.nanpercentile(v, 2.5)), 4), round(float(np.nanpercentile(v, 97.5)), 4)]
        for k, v in draws.items()
    }


def operating_point(
    spec: ImageClassifier,
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """The threshold and its validation figures for ``spec``'s screening."""
    assert spec.screening is not None
    scores = screening_scores(probabilities, spec)
    positive_index = [spec.labels.index(label) for label in spec.screening.positive]
    positive = np.isin(labels, positive_index)
    threshold = choose_threshold(scores, positive, spec.screening.target_sensitivity)
    found = rates(scores, positive, threshold)
    per_class = {}
    for label in sorted(spec.screening.positive):
        rows = labels == spec.labels.index(label)
        per_class[label] = {
            "support": int(rows.sum()),
            "sensitivity": round(float((scores[rows] >= threshold).mean()), 4),
        }
    return {
        "threshold": threshold,
        "positives": int(positive.sum()),
        "negatives": int((~positive).sum()),
        "auc": round(binary_auc(scores, positive), 4),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in found.items()},
        "ci95": bootstrap(scores, positive, threshold, resamples, seed),
        "sensitivity_by_class": per_class,
    }


def run(spec: ImageClassifier, data: Path, out: Path, resamples: int, seed: int) -> dict:
    model = load_model(spec.name, out, operating_point=False)  # the one being chosen
    assert spec.screening is not None
    with np.load(data) as npz:
        images = npz["val_images"]
        labels = npz["val_labels"].reshape(-1).astype(np.int64)
    probabilities = np.concatenate(
        [model.predict(images[i : i + 128]).probabilities for i in range(0, len(images), 128)]
    )
    point = operating_point(spec, probabilities, labels, resamples=resamples, seed=seed)
    result = {
        "model": spec.name,
        "version": model.version,
        "weights_sha256": model.metadata["weights_sha256"],
        "screening": spec.screening.name,
        "score": f"sum of P({' + '.join(sorted(spec.screening.positive))})",
        "positive_labels": sorted(spec.screening.positive),
        "target_sensitivity": spec.screening.target_sensitivity,
        "threshold": point.pop("threshold"),
        "split": "val",
        "data_file": relative_to_repo(data),
        "n": int(len(labels)),
        "validation": point,
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": "95 % percentile"},
        "command": f".venv/bin/python -m inference.training.operating_point --model {spec.name}",
        "caveat": CAVEAT,
    }
    path = spec.operating_point_path(out)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {relative_to_repo(path)}")
    return result


def table(result: dict) -> str:
    """The model-card rows for ``result``."""
    v, ci = result["validation"], result["validation"]["ci95"]

    def cell(key: str) -> str:
        return f"{v[key]:.3f} ({ci[key][0]:.3f}–{ci[key][1]:.3f})"

    lines = [
        f"threshold {result['threshold']} on {result['score']} "
        f"({result['model']} {result['version']}, validation n = {result['n']}: "
        f"{v['positives']} malignant, {v['negatives']} benign; AUC {v['auc']:.3f})",
        "",
        "| figure (validation, 95 % bootstrap CI) | value |",
        "|---|---|",
        f"| sensitivity | {cell('sensitivity')} |",
        f"| specificity | {cell('specificity')} |",
        f"| PPV | {cell('ppv')} |",
        f"| NPV | {cell('npv')} |",
        f"| share referred | {cell('referred_share')} |",
    ]
    for label, row in v["sensitivity_by_class"].items():
        lines.append(f"| sensitivity, {label} (n = {row['support']}) | {row['sensitivity']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a screening model (default: all)")
    parser.add_argument("--data", type=Path, help="the npz with val_images / val_labels")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    parser.add_argument("--seed", type=int, default=BOOTSTRAP_SEED)
    args = parser.parse_args(argv)
    names = args.model or [n for n, s in MODELS.items() if s.screening is not None]
    for name in names:
        spec = MODELS[name]
        if spec.screening is None:
            raise SystemExit(f"{name} declares no screening")
        meta = spec.metadata(args.out)
        data = args.data or (REPO / meta["data_file"]).resolve()
        print(table(run(spec, data, args.out, args.resamples, args.seed)))


if __name__ == "__main__":
    main()
