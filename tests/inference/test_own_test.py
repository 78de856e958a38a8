"""The skin model's own untouched test split: reproducible from the committed definition,
stratified, disjoint by lesion, left out of training, and refused for evaluation of a model that
was trained on it; the decision rule is chosen on validation under its melanoma constraint."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from inference.registry import MODELS
from inference.training import decision_rule, evaluate, own_test
from inference.training.common import load_split

DATA = own_test.DEFAULT_DATA
METADATA = own_test.SHARED_ML / "HAM10000_metadata.csv"


@pytest.fixture(scope="module")
def split() -> dict:
    return json.loads(own_test.SPLIT_FILE.read_text())


def test_committed_split_is_what_the_seeded_carve_gives(split):
    assert own_test.build(DATA, METADATA) == split
    index = own_test.load_holdout(own_test.SPLIT_FILE, DATA)
    assert index.tolist() == split["indices"] and len(set(split["lesion_ids"])) == split["n"]


def test_split_is_stratified_fifteen_percent_of_each_class(split):
    with np.load(DATA) as npz:
        labels = npz["train_labels"].reshape(-1)
    totals = np.bincount(labels, minlength=7)
    assert split["class_counts"] == [max(1, round(0.15 * n)) for n in totals]
    assert sum(split["class_counts"]) == split["n"] == 628


def test_a_changed_split_or_data_is_refused(split, tmp_path):
    moved = {**split, "indices": [split["indices"][0] + 1, *split["indices"][1:]]}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(moved))
    with pytest.raises(own_test.SplitMismatch):
        own_test.load_holdout(path, DATA)


def test_training_leaves_the_split_out(split):
    index = own_test.load_holdout(own_test.SPLIT_FILE, DATA)
    _, labels = load_split(DATA, MODELS["skin"], "train", index)
    assert len(labels) == 4189 - 628
    with np.load(DATA) as npz:
        kept = np.delete(npz["train_labels"].reshape(-1), index)
    assert labels.numpy().tolist() == kept.tolist()


def test_evaluation_refuses_a_model_trained_on_the_split():
    trained_on_it = SimpleNamespace(
        version="skin-x", metadata={"data_file": "../shared/data/ml/x.npz", "holdout": None}
    )
    with pytest.raises(SystemExit, match="not trained without the own test split"):
        evaluate.rows_of(trained_on_it, "own-test")  # type: ignore[arg-type]


def test_shipped_weights_were_trained_without_the_split_and_carry_its_figures(split):
    """The shipped weights were trained without the own test split (its checksum is in their
    metadata), so the evaluation takes them, and the stored figures are theirs: the held-out
    figures ``hearth ai models`` and docs/models.md show are the product's own."""
    from inference.predict import load_model

    shipped = load_model("skin")
    assert (shipped.metadata.get("holdout") or {}).get("checksum") == split["checksum"]
    images, labels, _ = evaluate.rows_of(shipped, "own-test")
    assert len(images) == len(labels) == 628
    stored = MODELS["skin"].evaluation()
    assert stored["own-test"]["figures"]["n"] == 628
    assert stored["own-test"]["version"] == shipped.version


def test_stored_evaluation_is_only_read_for_the_weights_it_was_made_for(tmp_path):
    spec = MODELS["skin"]
    meta = spec.metadata()
    for suffix in (".json", ".operating_point.json"):
        (tmp_path / f"skin{suffix}").write_text(
            (spec.metadata_path().parent / f"skin{suffix}").read_text()
        )
    figures = {"figures": {"n": 628, "balanced_accuracy": 0.6, "macro_auc": 0.9,
               "melanoma_sensitivity": 0.8, "screening": {"sensitivity": 0.9, "specificity": 0.6}}}  # fmt: skip
    stored = {"weights_sha256": meta["weights_sha256"], "own-test": figures}
    spec.evaluation_path(tmp_path).write_text(json.dumps(stored))
    assert spec.evaluation(tmp_path)["own-test"] == figures
    from inference import results

    device = results.model_device(spec, meta, None, spec.evaluation(tmp_path))
    props = {p["type"]["text"]: p["valueQuantity"][0]["value"] for p in device["property"]}
    assert props["own test split balanced accuracy"] == 0.6
    assert props["own test split melanoma sensitivity"] == 0.8
    stale = {**stored, "weights_sha256": "0" * 64}
    spec.evaluation_path(tmp_path).write_text(json.dumps(stale))
    assert spec.evaluation(tmp_path) == {}


def test_decision_rule_meets_the_melanoma_constraint_at_the_best_balanced_accuracy():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), [20, 25, 60, 6, 50, 430, 8])
    logits = rng.normal(0, 1, (len(labels), 7))
    logits[np.arange(len(labels)), labels] += 1.5
    logits[labels == 4, 5] += 1.8  # melanomas look like nevi
    prior = np.log(np.bincount(labels) / len(labels))
    choice = decision_rule.choose(logits, labels, prior, 4, 0.85)
    assert choice["val_mel_sensitivity"] >= 0.85 > choice["argmax_val_mel_sensitivity"]
    offset = choice["alpha"] * prior + choice["beta"] * np.eye(7)[4]
    decided = np.argmax(logits + offset, axis=1)
    sens = decision_rule.sensitivities(decided, labels, 7)
    assert sens[4] >= 0.85 and round(float(np.nanmean(sens)), 4) == choice["val_balanced_accuracy"]
    # No other grid point with the constraint met has a higher balanced accuracy.
    for alpha in decision_rule.ALPHAS:
        for beta in decision_rule.BETAS:
            other = np.argmax(logits + alpha * prior + beta * np.eye(7)[4], axis=1)
            s = decision_rule.sensitivities(other, labels, 7)
            if s[4] >= 0.85:
                assert np.nanmean(s) <= choice["val_balanced_accuracy"] + 1e-4
