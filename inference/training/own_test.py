"""The skin model's own untouched test split, carved from the shared training data.

The shared file (``ham10000_onelesion_64_trainval.npz``) has a train split (4,189 lesions) and a
validation split (597), one image per lesion. Validation selected the recipe, seed and decision
rules (docs/models.md), so its figures flatter. This module sets aside a stratified share of the
*train* split, by lesion, as an own test split: the training scripts drop it (``--holdout``),
nothing is chosen on it, and ``python -m inference.training.evaluate --split own-test`` reports
on it once.

    .venv/bin/python -m inference.training.own_test            # verify the committed split
    .venv/bin/python -m inference.training.own_test --write    # (re)carve it (seeded, same result)

The split is written as train-row indices plus their image and lesion ids (from
HAM10000_metadata.csv) and a sha256 over the ids, so a changed data file is detected rather than
silently giving other rows.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from inference.training.common import SHARED_ML, relative_to_repo

SPLIT_FILE = Path(__file__).resolve().parent / "splits" / "skin_own_test.json"
DEFAULT_DATA = SHARED_ML / "ham10000_onelesion_64_trainval.npz"
FRACTION = 0.15
SEED = 20261207


class SplitMismatch(RuntimeError):
    """The committed split does not describe the data file's rows."""


def ids_checksum(image_ids: list[str], labels: list[int]) -> str:
    text = "\n".join(f"{i},{label}" for i, label in zip(image_ids, labels, strict=True))
    return hashlib.sha256(text.encode()).hexdigest()


def lesion_ids(metadata_csv: Path) -> dict[str, str]:
    with metadata_csv.open(newline="") as handle:
        return {row["image_id"]: row["lesion_id"] for row in csv.DictReader(handle)}


def carve(labels: np.ndarray, fraction: float = FRACTION, seed: int = SEED) -> np.ndarray:
    """Sorted row indices: ``round(fraction * n_c)`` rows (at least one) of each class ``c``,
    drawn without replacement by a seeded generator, class by class in label order."""
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        take = max(1, int(round(fraction * len(rows))))
        picked.extend(int(i) for i in rng.choice(rows, size=take, replace=False))
    return np.array(sorted(picked), dtype=np.int64)


def build(data: Path, metadata_csv: Path, fraction: float = FRACTION, seed: int = SEED) -> dict:
    with np.load(data) as npz:
        ids = [str(i) for i in npz["train_ids"]]
        labels = npz["train_labels"].reshape(-1).astype(np.int64)
        val_ids = {str(i) for i in npz["val_ids"]}
    lesions = lesion_ids(metadata_csv)
    index = carve(labels, fraction, seed)
    chosen_ids = [ids[i] for i in index]
    chosen_lesions = [lesions[i] for i in chosen_ids]
    rest_lesions = {lesions[ids[i]] for i in set(range(len(ids))) - set(index.tolist())}
    val_lesions = {lesions[i] for i in val_ids}
    if set(chosen_lesions) & (rest_lesions | val_lesions):
        raise SplitMismatch("a held-out lesion also appears in train or validation")
    chosen_labels = [int(labels[i]) for i in index]
    return {
        "description": (
            "Own untouched test split of the skin model: rows of the data file's train split, "
            "stratified by class, one image per lesion; never trained on, never used to choose."
        ),
        "data_file": relative_to_repo(data),
        "split": "train",
        "rows_in_split": len(ids),
        "fraction": fraction,
        "seed": seed,
        "method": "per class: round(fraction * n) rows, numpy default_rng(seed).choice",
        "n": len(index),
        "class_counts": np.bincount(chosen_labels, minlength=int(labels.max()) + 1).tolist(),
        "checksum": ids_checksum(chosen_ids, chosen_labels),
        "checksum_of": "sha256 of 'image_id,label' lines in index order",
        "indices": index.tolist(),
        "image_ids": chosen_ids,
        "lesion_ids": chosen_lesions,
    }


def load_holdout(path: Path, data: Path) -> np.ndarray:
    """The held-out train-row indices of ``path``, checked against ``data``'s ids and labels."""
    split = json.loads(Path(path).read_text())
    index = np.asarray(split["indices"], dtype=np.int64)
    with np.load(data) as npz:
        ids = npz[f"{split['split']}_ids"]
        labels = npz[f"{split['split']}_labels"].reshape(-1).astype(np.int64)
    if len(ids) != split["rows_in_split"] or index.max(initial=-1) >= len(ids):
        raise SplitMismatch(
            f"{path}: written for {split['rows_in_split']} rows, data has {len(ids)}"
        )
    actual = ids_checksum([str(ids[i]) for i in index], [int(labels[i]) for i in index])
    if actual != split["checksum"] or [str(ids[i]) for i in index] != split["image_ids"]:
        raise SplitMismatch(f"{path}: checksum {split['checksum']} does not match the data")
    return index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--metadata", type=Path, default=SHARED_ML / "HAM10000_metadata.csv")
    parser.add_argument("--out", type=Path, default=SPLIT_FILE)
    parser.add_argument("--write", action="store_true", help="(re)write the split file")
    args = parser.parse_args(argv)
    split = build(args.data, args.metadata)
    if args.write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(split, indent=1) + "\n")
        print(f"wrote {relative_to_repo(args.out)}")
    else:
        committed = json.loads(args.out.read_text())
        if committed != split:
            raise SystemExit(f"{relative_to_repo(args.out)} differs from a fresh carve")
        load_holdout(args.out, args.data)
    print(f"own test: {split['n']} lesions, per class {split['class_counts']}, {split['checksum']}")


if __name__ == "__main__":
    main()
