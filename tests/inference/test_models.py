"""The shipped image models: integrity, metadata, and validation metrics recomputed.

The validation images come from ``../shared/data/ml``; every check here can fail: a weights file
that does not match its recorded sha256, a model whose recomputed metrics drift from the model
card's or fall below the floor we accept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.metrics import classification_report, expected_calibration_error
from inference.predict import ModelIntegrityError, load_model, sha256_of
from inference.preprocess import preprocess
from inference.registry import MODELS
from tests.shared import shared_path

DATA = {
    "skin": ("data", "ml", "ham10000_onelesion_64_trainval.npz"),
    "pneumonia": ("data", "ml", "pneumoniamnist_trainval.npz"),
}
# Floors on the validation split (below the aims in docs/models.md, above any broken model).
FLOORS = {
    "skin": {"balanced_accuracy": 0.60, "macro_auc": 0.90},
    "pneumonia": {"accuracy": 0.90, "macro_auc": 0.97},
}
MAX_WEIGHTS_BYTES = 10 * 1024 * 1024


def _val(name: str, limit: int | None = None):
    with np.load(shared_path(*DATA[name])) as data:
        images = data["val_images"][:limit]
        labels = data["val_labels"].reshape(-1)[:limit].astype(np.int64)
    return images, labels


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return load_model(request.param)


def test_metadata_matches_registry_and_file(model):
    spec, meta = model.spec, model.metadata
    weights = spec.weights_path()
    assert meta["weights_sha256"] == sha256_of(weights)
    assert meta["weights_bytes"] == weights.stat().st_size <= MAX_WEIGHTS_BYTES
    assert tuple(meta["labels"]) == spec.labels
    assert meta["network"] == spec.network
    assert meta["input"]["size"] == spec.input_size and meta["input"]["mode"] == spec.mode
    assert meta["temperature"] > 0
    assert len(meta["calibration_offset"]) == len(meta["decision_offset"]) == len(spec.labels)
    checkout_parent = str(Path(__file__).resolve().parents[3])  # no path of this machine
    assert not meta["data_file"].startswith("/") and checkout_parent not in json.dumps(meta)


def test_tampered_weights_are_refused(tmp_path):
    spec = MODELS["pneumonia"]
    shutil.copy(spec.metadata_path(), tmp_path)
    raw = bytearray(spec.weights_path().read_bytes())
    raw[-100] ^= 0xFF
    (tmp_path / spec.weights_path().name).write_bytes(bytes(raw))
    with pytest.raises(ModelIntegrityError):
        load_model("pneumonia", tmp_path)


def test_validation_metrics_recomputed(model):
    name = model.spec.name
    images, labels = _val(name)
    prediction = model.predict(images)
    report = classification_report(
        prediction.probabilities, prediction.labels, labels, model.spec.labels
    )
    recorded = model.metadata["val"]
    for key in ("accuracy", "balanced_accuracy", "macro_auc"):
        assert report[key] == pytest.approx(recorded[key], abs=2e-3), key
    for key, floor in FLOORS[name].items():
        assert report[key] >= floor, (key, report[key])
    choice = model.metadata.get("decision_rule_choice")
    if choice is not None:  # the class-decision rule chosen on validation (decision_rule.py)
        mel = model.spec.labels.index("mel")
        recall = float((prediction.labels[labels == mel] == mel).mean())
        assert recall == pytest.approx(choice["val_mel_sensitivity"], abs=1e-3)
        assert recall >= 0.85 and report["balanced_accuracy"] == pytest.approx(
            choice["val_balanced_accuracy"], abs=2e-3
        )
    ece = expected_calibration_error(prediction.probabilities, labels)
    assert ece == pytest.approx(recorded["ece_after"], abs=2e-3)
    # Temperature scaling minimises the validation NLL (T = 1 is one candidate), so it can only
    # lower it; ECE is not its objective and may move either way by a little.
    assert recorded["nll_after"] <= recorded["nll_before"] + 1e-9
    assert abs(recorded["ece_after"] - recorded["ece_before"]) < 0.02
    if model.spec.screening is not None:  # the shipped operating point, recomputed
        from inference.training.operating_point import operating_point

        point = operating_point(model.spec, prediction.probabilities, labels, resamples=20)
        shipped = model.operating_point
        assert shipped is not None and shipped["version"] == model.version
        assert point["threshold"] == pytest.approx(shipped["threshold"], abs=2e-6)
        assert point["sensitivity"] >= model.spec.screening.target_sensitivity
        for key in ("sensitivity", "specificity", "auc"):
            assert point[key] == pytest.approx(shipped["validation"][key], abs=2e-3), key


def test_batch_and_single_image_agree(model):
    images, _ = _val(model.spec.name, limit=8)
    batch = model.predict(images)
    single = model.predict(images[3])
    np.testing.assert_allclose(single.probabilities[0], batch.probabilities[3], atol=1e-5)
    np.testing.assert_allclose(batch.probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_full_size_dermoscopy_photo():
    from PIL import Image

    model = load_model("skin")
    with Image.open(shared_path("data", "skin_photos", "ISIC_0024872.jpg")) as photo:
        tensor = preprocess(photo, size=64, mode="RGB")
        prediction = model.predict(photo)
    assert (
        tensor.shape == (1, 3, 64, 64) and 0.0 <= float(tensor.min()) <= float(tensor.max()) <= 1.0
    )
    assert prediction.probabilities.shape == (1, 7)
    assert 0 <= int(prediction.labels[0]) < 7
