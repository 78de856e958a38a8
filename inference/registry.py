"""The models Hearth ships, by name: network, input, labels and where the weights live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ColourMode = Literal["RGB", "L"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    network: str  # a key of inference.networks.NETWORKS
    input_size: int
    mode: ColourMode
    labels: tuple[str, ...]
    display: tuple[str, ...]
    analysis: str  # the analysis kind (inference.codes.ANALYSES) this model performs
    title: str
    high_risk: frozenset[str]  # labels that make a result urgent
    benign: frozenset[str]  # labels interpreted as normal (N); the rest are abnormal (A)
    confidence_threshold: float = 0.75  # below it the result is "uncertain"

    def weights_path(self, directory: Path = WEIGHTS_DIR) -> Path:
        return directory / f"{self.name}.pt"

    def metadata_path(self, directory: Path = WEIGHTS_DIR) -> Path:
        return directory / f"{self.name}.json"


SKIN = ModelSpec(
    name="skin",
    network="skin-resnet18-w32",
    input_size=64,
    mode="RGB",
    labels=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
    display=(
        "actinic keratosis / intraepithelial carcinoma",
        "basal cell carcinoma",
        "benign keratosis-like lesion",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevus",
        "vascular lesion",
    ),
    analysis="skin-lesion-classification",
    title="Hearth skin lesion classifier (HAM10000, 7 classes)",
    high_risk=frozenset({"mel", "bcc", "akiec"}),
    benign=frozenset({"bkl", "df", "nv", "vasc"}),
)

PNEUMONIA = ModelSpec(
    name="pneumonia",
    network="pneumonia-resnet10-w16",
    input_size=28,
    mode="L",
    labels=("normal", "pneumonia"),
    display=("normal", "pneumonia"),
    analysis="chest-xray-pneumonia",
    title="Hearth chest X-ray pneumonia classifier (PneumoniaMNIST)",
    high_risk=frozenset({"pneumonia"}),
    benign=frozenset({"normal"}),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (SKIN, PNEUMONIA)}
MODEL_FOR_ANALYSIS: dict[str, ModelSpec] = {spec.analysis: spec for spec in MODELS.values()}


def metadata(name: str, directory: Path = WEIGHTS_DIR) -> dict:
    """The training metadata of model ``name`` (version, metrics, calibration), without loading
    its weights."""
    import json

    return json.loads(MODELS[name].metadata_path(directory).read_text())


def version_of(name: str) -> str:
    return str(metadata(name)["version"])
