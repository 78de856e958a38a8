"""Load a shipped model and predict: pre-process → network → post-process.

Post-processing follows the metadata JSON written by training (``inference/weights/<name>.json``):

* probabilities = ``softmax((logits + calibration_offset) / temperature)`` — temperature scaling
  fitted on the validation split; ``calibration_offset`` puts back the log class prior for
  networks trained with a logit-adjusted (class-balanced) loss, so the probabilities are
  calibrated at the training prevalence;
* decision = ``argmax(logits + decision_offset)`` — the rule chosen for balanced accuracy.

The weights file's sha256 must match the one recorded in the JSON, or loading fails. A model
that declares a screening decision also loads its operating point
(``inference/weights/<name>.operating_point.json``, chosen on validation by
``python -m inference.training.operating_point``), which must name the same weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from inference.networks import build_network
from inference.preprocess import preprocess
from inference.registry import MODELS
from inference.spec import WEIGHTS_DIR, ImageClassifier


class ModelIntegrityError(RuntimeError):
    """The weights file does not match the sha256 recorded in its metadata."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def network_logits(network: nn.Module, batch: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits of ``network`` on a pre-processed batch, optionally averaged over the 8 dihedral
    views (``tta="dihedral8"``: rotations by 90° with and without a flip)."""
    network.eval()
    with torch.inference_mode():
        if tta == "none":
            return network(batch)
        if tta != "dihedral8":
            raise ValueError(f"unknown test-time augmentation {tta!r}")
        total = torch.zeros(())
        for flip in (False, True):
            view = batch.flip(-1) if flip else batch
            for k in range(4):
                total = total + network(torch.rot90(view, k, dims=(-2, -1)))
        return total / 8.0


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # (N, classes), calibrated
    labels: np.ndarray  # (N,), decided class index


@dataclass
class LoadedModel:
    spec: ImageClassifier
    network: nn.Module
    metadata: dict
    operating_point: dict | None = None  # the screening threshold and its validation figures
    evaluation: dict | None = None  # figures on validation and the own test split, when stored

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    def predict_logits(self, batch: torch.Tensor) -> np.ndarray:
        return network_logits(self.network, batch, self.metadata.get("tta", "none")).numpy()

    def postprocess(self, logits: np.ndarray) -> Prediction:
        calibration = np.asarray(self.metadata["calibration_offset"], dtype=np.float64)
        decision = np.asarray(self.metadata["decision_offset"], dtype=np.float64)
        scaled = (logits.astype(np.float64) + calibration) / float(self.metadata["temperature"])
        scaled -= scaled.max(axis=1, keepdims=True)
        probabilities = np.exp(scaled)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return Prediction(probabilities, np.argmax(logits + decision, axis=1))

    def predict(self, images: Image.Image | np.ndarray | list) -> Prediction:
        batch = preprocess(images, size=self.spec.input_size, mode=self.spec.mode)
        return self.postprocess(self.predict_logits(batch))


def load_model(
    name: str, directory: Path = WEIGHTS_DIR, *, operating_point: bool = True
) -> LoadedModel:
    """Load the shipped model ``name`` after checking its weights against the recorded sha256.
    ``operating_point=False``: without its screening threshold (for the script that chooses it
    on fresh weights)."""
    spec = MODELS[name]
    metadata = json.loads(spec.metadata_path(directory).read_text())
    weights = spec.weights_path(directory)
    actual = sha256_of(weights)
    if actual != metadata["weights_sha256"]:
        raise ModelIntegrityError(
            f"{weights.name}: sha256 {actual} differs from {metadata['weights_sha256']} in metadata"
        )
    network = build_network(spec.network)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    )
    network.eval()
    point = load_operating_point(spec, metadata, directory) if operating_point else None
    return LoadedModel(spec, network, metadata, point, spec.evaluation(directory))


def load_operating_point(
    spec: ImageClassifier, metadata: dict, directory: Path = WEIGHTS_DIR
) -> dict | None:
    """The screening operating point of ``spec`` (None when it declares no screening). A missing
    file, or one chosen for other weights, stops the load: a stale threshold is never applied."""
    if spec.screening is None:
        return None
    path = spec.operating_point_path(directory)
    if not path.exists():
        raise ModelIntegrityError(
            f"{path.name} is missing: run python -m inference.training.operating_point"
        )
    point = json.loads(path.read_text())
    if point.get("weights_sha256") != metadata["weights_sha256"]:
        raise ModelIntegrityError(
            f"{path.name} was chosen for other weights ({point.get('version')}, not "
            f"{metadata['version']}): run python -m inference.training.operating_point"
        )
    return point
