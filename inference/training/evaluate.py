"""Evaluate a skin model, exactly as the product predicts, on validation or on the own untouched
test split, with 95 % bootstrap intervals.

The model is :func:`inference.predict.load_model` (pre-processing, dihedral test-time
augmentation, temperature, calibration and decision offsets, the screening operating point), so
the figures are those of ``hearth ai predict``'s ``prediction``. The own test split
(:mod:`inference.training.own_test`) is refused for a model whose metadata does not say it was
trained without it. Nothing here chooses anything: temperature, decision rule and threshold were
fixed on validation before this runs.

    .venv/bin/python -m inference.training.evaluate --split own-test [--write]
    .venv/bin/python -m inference.training.evaluate --split val [--dir DIR] [--write]

Figures: accuracy, balanced accuracy (mean per-class sensitivity), macro one-vs-rest AUC,
melanoma sensitivity, the screening decision's sensitivity / specificity / PPV / NPV / share
referred at the shipped threshold, and per class support, sensitivity, specificity and AUC.
Intervals: 95 % percentile bootstrap over lesions (one image per lesion: independent rows),
2,000 resamples, seeded. ``--write`` stores the result in ``<dir>/skin.evaluation.json`` (read by
``hearth ai models`` and the model's Device), keyed by split, for these weights only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from inference.metrics import binary_auc, classification_report
from inference.predict import LoadedModel, load_model
from inference.spec import WEIGHTS_DIR
from inference.training.common import REPO, relative_to_repo
from inference.training.operating_point import rates, screening_scores
from inference.training.own_test import SPLIT_FILE, load_holdout

RESAMPLES = 2000
SEED = 20261207
SPLITS = ("val", "own-test")
MELANOMA = "mel"


def rows_of(model: LoadedModel, split: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """The images and labels of ``split`` and what identifies them."""
    data = (REPO / model.metadata["data_file"]).resolve()
    if split == "val":
        with np.load(data) as npz:
            images = npz["val_images"]
            labels = npz["val_labels"].reshape(-1).astype(np.int64)
        return images, labels, {"data_file": relative_to_repo(data), "rows": "val"}
    split_file = json.loads(SPLIT_FILE.read_text())
    held = model.metadata.get("holdout") or {}
    if held.get("checksum") != split_file["checksum"]:
        raise SystemExit(
            f"model {model.version} was not trained without the own test split "
            f"({relative_to_repo(SPLIT_FILE)}): its figures there would be training figures"
        )
    index = load_holdout(SPLIT_FILE, data)
    with np.load(data) as npz:
        images = npz["train_images"][index]
        labels = npz["train_labels"].reshape(-1).astype(np.int64)[index]
    return (
        images,
        labels,
        {
            "data_file": relative_to_repo(data),
            "rows": f"train rows of {relative_to_repo(SPLIT_FILE)}",
            "split_checksum": split_file["checksum"],
        },
    )


def figures(model: LoadedModel, probs: np.ndarray, decided: np.ndarray, labels: np.ndarray) -> dict:
    """The point figures (see the module docstring)."""
    spec = model.spec
    report = classification_report(probs, decided, labels, spec.labels)
    mel = spec.labels.index(MELANOMA)
    out = {
        "n": report["n"],
        "accuracy": report["accuracy"],
        "balanced_accuracy": report["balanced_accuracy"],
        "macro_auc": report["macro_auc"],
        "melanoma_sensitivity": round(float((decided[labels == mel] == mel).mean()), 4),
        "per_class": report["per_class"],
        "confusion_matrix": report["confusion_matrix"],
    }
    if spec.screening is not None and model.operating_point is not None:
        scores = screening_scores(probs, spec)
        positive = np.isin(labels, [spec.labels.index(x) for x in spec.screening.positive])
        found = rates(scores, positive, float(model.operating_point["threshold"]))
        out["screening"] = {
            "threshold": model.operating_point["threshold"],
            "auc": round(binary_auc(scores, positive), 4),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in found.items()},
        }
    return out


def _draw(model: LoadedModel, probs, decided, labels) -> dict[str, float]:  # type: ignore[no-untyped-def]
    f = figures(model, probs, decided, labels)
    flat = {
        "accuracy": f["accuracy"],
        "balanced_accuracy": f["balanced_accuracy"],
        "macro_auc": f["macro_auc"],
        "melanoma_sensitivity": f["melanoma_sensitivity"],
    }
    for name, row in f["per_class"].items():
        flat[f"{name}.sensitivity"] = row["sensitivity"]
        flat[f"{name}.specificity"] = row["specificity"]
    for key in ("sensitivity", "specificity", "ppv", "npv", "referred_share"):
        if "screening" in f:
            flat[f"screening.{key}"] = f["screening"][key]
    return flat


def bootstrap(model: LoadedModel, probs, decided, labels, resamples: int, seed: int) -> dict:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    n = len(labels)
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        for key, value in _draw(model, probs[pick], decided[pick], labels[pick]).items():
            draws.setdefault(key, []).append(value)
    return {
        k: [round(float(np.nanpercentile(v, 2.5)), 4), round(float(np.nanpercentile(v, 97.5)), 4)]
        for k, v in draws.items()
    }


def evaluate(model: LoadedModel, split: str, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    images, labels, source = rows_of(model, split)
    predictions = [model.predict(images[i : i + 128]) for i in range(0, len(images), 128)]
    probs = np.concatenate([p.probabilities for p in predictions])
    decided = np.concatenate([p.labels for p in predictions])
    return {
        "model": model.spec.name,
        "version": model.version,
        "weights_sha256": model.metadata["weights_sha256"],
        "split": split,
        **source,
        "decision_rule": model.metadata.get("decision_rule"),
        "figures": figures(model, probs, decided, labels),
        "ci95": bootstrap(model, probs, decided, labels, resamples, seed),
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": "95 % percentile"},
        "command": f".venv/bin/python -m inference.training.evaluate --split {split}",
    }


def table(result: dict) -> str:
    """Markdown rows of ``result`` (the model card's layout)."""
    f, ci = result["figures"], result["ci95"]

    def cell(value: float, key: str) -> str:
        low, high = ci.get(key, [float("nan")] * 2)
        return f"{value:.3f} ({low:.3f}–{high:.3f})"

    lines = [
        f"{result['split']}: n = {f['n']}, model {result['version']}",
        "",
        "| figure (95 % bootstrap CI) | value |",
        "|---|---|",
        f"| balanced accuracy | {cell(f['balanced_accuracy'], 'balanced_accuracy')} |",
        f"| macro AUC | {cell(f['macro_auc'], 'macro_auc')} |",
        f"| accuracy | {cell(f['accuracy'], 'accuracy')} |",
        f"| melanoma sensitivity | {cell(f['melanoma_sensitivity'], 'melanoma_sensitivity')} |",
    ]
    if "screening" in f:
        s = f["screening"]
        for key in ("sensitivity", "specificity", "ppv", "npv", "referred_share"):
            lines.append(
                f"| screening {key} (t = {s['threshold']}) | {cell(s[key], f'screening.{key}')} |"
            )
    lines += [
        "",
        "| class | n | sensitivity (95 % CI) | specificity (95 % CI) | AUC |",
        "|---|---|---|---|---|",
    ]
    for name, row in f["per_class"].items():
        lines.append(
            f"| {name} | {row['support']} | {cell(row['sensitivity'], f'{name}.sensitivity')} | "
            f"{cell(row['specificity'], f'{name}.specificity')} | {row['auc']:.3f} |"
        )
    return "\n".join(lines)


def write(directory: Path, result: dict) -> Path:
    """Store ``result`` in ``<directory>/skin.evaluation.json`` under its split (results for
    other weights are dropped)."""
    path = directory / f"{result['model']}.evaluation.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    if stored.get("weights_sha256") != result["weights_sha256"]:
        stored = {"weights_sha256": result["weights_sha256"], "version": result["version"]}
    stored[result["split"]] = {k: v for k, v in result.items() if k not in ("weights_sha256",)}
    path.write_text(json.dumps(stored, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--dir", type=Path, default=WEIGHTS_DIR, help="the weights directory")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--write", action="store_true", help="store in <dir>/skin.evaluation.json")
    parser.add_argument("--json", action="store_true", help="print the JSON, not the table")
    args = parser.parse_args(argv)
    model = load_model("skin", args.dir)
    result = evaluate(model, args.split, args.resamples, args.seed)
    print(json.dumps(result) if args.json else table(result))
    if args.write:
        print(f"wrote {relative_to_repo(write(args.dir, result))}")


if __name__ == "__main__":
    main()
