"""What an AI model declares: one ``MODEL`` per module of ``inference/models/`` (docs/extending.md).

An :class:`ImageClassifier` is a trained network (its weights in ``inference/weights/``) whose
results are one ``Observation`` per input; a :class:`Formula` is a published score computed from
the record, whose result is a ``RiskAssessment``. Both say which analysis kind they perform (the
``code`` of their Tasks and results), on which resources ``$ai-analyze`` offers them, which one
is the default for a focus, and when Hearth asks for them by itself (:class:`Trigger`).

Nothing here imports torch: the API process reads these declarations; only workers build
networks (the factories import torch when called).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL import Image

    from resources.storage.repository import Repository, Unit

ColourMode = Literal["RGB", "L"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Trigger:
    """When Hearth requests the analysis by itself: a resource of ``resource_type`` is
    ``created`` (write hook, same transaction), or an ImagingStudy is announced complete by the
    DICOM receiver (``study-complete``), and ``applies(resource)`` holds."""

    event: Literal["created", "study-complete"]
    resource_type: str
    applies: Callable[[dict], bool]


@dataclass(frozen=True)
class Screening:
    """A binary "refer" decision beside the class finding: the summed probability of the
    ``positive`` classes at or above a threshold chosen on the validation split for
    ``target_sensitivity`` (``python -m inference.training.operating_point``, which writes it to
    ``inference/weights/<model>.operating_point.json`` beside the model's metadata)."""

    name: str  # what is screened for: "malignancy"
    display: str  # e.g. "Probability of malignancy (melanoma + bcc + akiec)"
    positive: frozenset[str]  # the labels whose probabilities are summed
    target_sensitivity: float


@dataclass(frozen=True)
class QualityGate:
    """What the image-quality gate (:mod:`inference.quality`) expects of a model's input:
    ``colour`` "colour" (a photo: grey images are refused) or "grey" (a radiograph: colour photos
    are refused), the smallest short side in pixels, and the share of the training images each
    statistic's threshold may refuse (``quantile``). The thresholds themselves are fitted on the
    training split by ``python -m inference.training.quality_gate`` into
    ``inference/weights/<model>.quality_gate.json``."""

    colour: Literal["colour", "grey"]
    min_side: int
    quantile: float = 0.002


@dataclass(frozen=True, kw_only=True, eq=False)
class AnalysisSpec:
    name: str  # the model key: case definitions, `hearth ai`, the label code system
    analysis: str  # the analysis kind: Task.code, Observation.code / RiskAssessment.code
    analysis_display: str  # what the analysis assesses (the code's display)
    title: str  # Device model-name, Observation.method display
    order: int  # position in listings (`hearth ai models`) and among defaults
    # Resource types `$ai-analyze` offers this analysis on, and when it is the default there
    # (no `analysis` parameter): applies(resource type, focus resource).
    operation_inputs: frozenset[str]
    default_for: Callable[[str, dict], bool]
    triggers: tuple[Trigger, ...] = ()

    def version(self) -> str:
        """The version of what performs the analysis now (the Device id of its results)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True, eq=False)
class ImageClassifier(AnalysisSpec):
    """A trained image classifier; its result is an Observation per input (and a heatmap)."""

    network: str  # the key of `networks` the shipped weights were trained for
    networks: Mapping[str, Callable[[], Any]]  # network factories: the shipped one, sweep variants
    input_size: int
    mode: ColourMode
    labels: tuple[str, ...]
    display: tuple[str, ...]
    high_risk: frozenset[str]  # labels that make a result urgent
    benign: frozenset[str]  # labels interpreted as normal (N); the rest are abnormal (A)
    snomed: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # label -> checked code
    confidence_threshold: float = 0.75  # below it the result is "uncertain"
    # Input selection: the ImagingStudy series the model reads (`series(series)`), what that
    # is called in a refusal, and the checks a decoded input must pass (raise BadInput).
    series: Callable[[dict], bool]
    wanted: str
    check_dicom: Callable[[Any], None] | None = None
    check_image: Callable[[Image.Image], None] | None = None
    training: str | None = None  # the module that trains the weights (python -m ...)
    # A "refer" decision on summed class probabilities, its threshold in the operating-point
    # file (``operating_point_path``); None: the class finding alone.
    screening: Screening | None = None
    # The image-quality / out-of-distribution gate every input passes first (None: none).
    quality: QualityGate | None = None
    # Outline and measure the lesion on each photo (:mod:`inference.segmentation`), stored on
    # the result so that the lesion history can show growth between visits.
    segment_lesion: bool = False

    def weights_path(self, directory: Path = WEIGHTS_DIR) -> Path:
        return directory / f"{self.name}.pt"

    def operating_point_path(self, directory: Path = WEIGHTS_DIR) -> Path:
        return directory / f"{self.name}.operating_point.json"

    def quality_gate_path(self, directory: Path = WEIGHTS_DIR) -> Path:
        return directory / f"{self.name}.quality_gate.json"

    def metadata_path(self, directory: Path = WEIGHTS_DIR) -> Path:
        return directory / f"{self.name}.json"

    def evaluation_path(self, directory: Path = WEIGHTS_DIR) -> Path:
        return directory / f"{self.name}.evaluation.json"

    def evaluation(self, directory: Path = WEIGHTS_DIR) -> dict:
        """The figures ``python -m inference.training.evaluate --write`` stored for the shipped
        weights, by split ("val", "own-test"); {} when there are none for these weights."""
        path = self.evaluation_path(directory)
        if not path.exists():
            return {}
        stored = json.loads(path.read_text())
        if stored.get("weights_sha256") != self.metadata(directory).get("weights_sha256"):
            return {}
        return dict(stored)

    def metadata(self, directory: Path = WEIGHTS_DIR) -> dict:
        """The training metadata (version, metrics, calibration), without loading weights."""
        return json.loads(self.metadata_path(directory).read_text())

    def version(self) -> str:
        return str(self.metadata()["version"])


@dataclass(frozen=True)
class Assessment:
    """A formula's result: the resources to write (its Device first, then the result), the
    Task's businessStatus, and whether the result is high risk."""

    resources: list[dict]
    business: str
    high_risk: bool


@dataclass(frozen=True, kw_only=True, eq=False)
class Formula(AnalysisSpec):
    """A published risk formula computed from the record; its result is a RiskAssessment."""

    formula_version: str
    citation: str  # the Device note
    summary: str  # `hearth ai models`
    # assess(repo, analysis Task, Task id) -> Assessment; raises BadInput for missing inputs.
    assess: Callable[[Repository, dict, str], Assessment]
    # inputs(unit, focus reference) -> the versioned references (``Type/id/_history/n``) of every
    # record entry the formula would read for that focus now. A request is keyed on them: a new
    # Task whenever an input is added, changed or deleted; the same Task while none is.
    inputs: Callable[[Unit, str], list[str]] | None = None

    def version(self) -> str:
        return self.formula_version
