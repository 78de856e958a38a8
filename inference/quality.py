"""The image-quality and out-of-distribution gate every image passes before a classifier.

Classical image statistics (numpy and PIL only, no network), computed on the image as the
classifier will see it (centre square, resized to the model's input size, as
:mod:`inference.preprocess` does), except the size check, which reads the upload:

* ``min_side`` — the upload's short side in pixels (tiny images);
* ``brightness`` — mean luminance 0–255 (too dark / over-exposed);
* ``contrast`` — luminance standard deviation (blank or solid-colour frames);
* ``sharpness`` — variance of the 4-neighbour Laplacian of the luminance, divided by the
  luminance variance (the share of fine detail: low when out of focus, whatever the exposure);
* ``stripes`` — how much of the image varies along one direction only: the smallest mean
  within-line variance (rows, columns, both diagonals) over the total variance (≈ 0 for
  vertical, horizontal or diagonal stripes, bars and gradients), and ``periodicity``, the share of the spectrum's
  energy (Hann-windowed 2-D FFT, DC and the lowest ring left out) in its 4 strongest frequency
  pairs (high for any regular stripe or grid pattern, whatever its direction);
* ``chroma`` — mean per-pixel (max − min) of R, G, B over 255 (0 for a grey image: an X-ray
  sent to the skin model; high for a colour photo sent to the X-ray model);
* ``distance`` — the Mahalanobis distance of the statistics above from the training images'
  (non-dermoscopic or non-radiographic content whose single statistics all look plausible).

The thresholds are each model's own (``inference/weights/<model>.quality_gate.json``, written by
``python -m inference.training.quality_gate`` from the model's training split and measured on
its validation split; docs/models.md); which checks a model runs, and its colour expectation,
its declaration says (:class:`inference.spec.QualityGate`). A refused image raises
:class:`~inference.images.BadInput` with what the cadre can do about it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from inference.images import BadInput
from inference.spec import WEIGHTS_DIR, ImageClassifier

FEATURES = ("brightness", "contrast", "sharpness", "stripes", "periodicity", "chroma")
# Features whose logarithm the Mahalanobis distance uses (skewed, positive).
LOG_FEATURES = frozenset({"contrast", "sharpness", "stripes", "periodicity"})
EPS = 1e-6


def model_view(image: Image.Image, size: int) -> np.ndarray:
    """The centre square of ``image`` resized to ``size`` (as the classifier sees it), RGB float
    array (H, W, 3) in 0–255."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(square, dtype=np.float64)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _periodicity(y: np.ndarray) -> float:
    n = y.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fftshift(np.fft.fft2((y - y.mean()) * window))) ** 2
    centre = n // 2
    yy, xx = np.mgrid[:n, :n]
    radius = np.hypot(yy - centre, xx - centre)
    power = power[radius > 2.5]  # DC and the lowest ring: overall shading, not a pattern
    total = float(power.sum())
    if total <= EPS:
        return 0.0
    top = np.sort(power)[-8:]  # 4 frequency pairs (the spectrum of a real image is symmetric)
    return float(top.sum() / total)


def _one_axis(y: np.ndarray) -> float:
    """The smallest mean within-line variance over the rows, the columns and the two diagonal
    directions (≈ 0 when the image varies across one direction only: stripes, bars)."""
    yy, xx = np.indices(y.shape)
    values, squares = y.ravel(), (y * y).ravel()
    found = []
    for line in (yy, xx, yy + xx, yy - xx + y.shape[1] - 1):
        index = line.ravel()
        count = np.bincount(index).astype(np.float64)
        mean = np.bincount(index, values) / count
        within = np.bincount(index, squares) / count - mean * mean
        found.append(float((np.clip(within, 0.0, None) * count).sum() / count.sum()))
    return min(found)


def statistics(view: np.ndarray) -> dict[str, float]:
    """The gate's statistics of a model view (``model_view``) or of a batch row."""
    rgb = np.asarray(view, dtype=np.float64)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    y = _luminance(rgb)
    variance = float(y.var())
    laplacian = (
        -4.0 * y[1:-1, 1:-1] + y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]
    )  # fmt: skip
    return {
        "brightness": float(y.mean()),
        "contrast": float(np.sqrt(variance)),
        "sharpness": float(laplacian.var() / (variance + EPS)),
        "stripes": _one_axis(y) / (variance + EPS),
        "periodicity": _periodicity(y),
        "chroma": float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / 255.0),
    }


def feature_vector(stats: Mapping[str, float], names: tuple[str, ...]) -> np.ndarray:
    return np.array(
        [np.log(stats[n] + EPS) if n in LOG_FEATURES else stats[n] for n in names],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class Verdict:
    """Why an image is refused (``check``: which statistic; ``reason``: what to do)."""

    check: str
    reason: str


def judge(
    stats: Mapping[str, float], min_side: int, thresholds: Mapping, colour: str, wanted: str
) -> Verdict | None:
    """The first check ``stats`` fails (None: the image passes). ``thresholds``: the model's
    quality-gate file; ``colour``: "colour" (a photo is expected) or "grey" (a radiograph)."""
    t = thresholds["thresholds"]
    if stats["min_side"] < min_side:
        return Verdict(
            "min_side",
            f"retake: the image is too small ({stats['width']:.0f}×{stats['height']:.0f} pixels; "
            f"at least {min_side} on the short side)",
        )
    if stats["brightness"] < t["brightness_min"]:
        return Verdict(
            "brightness",
            f"retake: the image is too dark (mean brightness {stats['brightness']:.0f} < "
            f"{t['brightness_min']:.0f} of 255): add light",
        )
    if stats["brightness"] > t["brightness_max"]:
        return Verdict(
            "brightness",
            f"retake: the image is over-exposed (mean brightness {stats['brightness']:.0f} > "
            f"{t['brightness_max']:.0f} of 255): less light or flash",
        )
    if stats["contrast"] < t["contrast_min"]:
        return Verdict(
            "contrast",
            "retake: the image has no visible content (a blank or solid-colour frame; "
            f"contrast {stats['contrast']:.1f} < {t['contrast_min']:.1f})",
        )
    if stats["stripes"] < t["stripes_min"]:
        return _stripes(stats, wanted)
    if colour == "colour" and stats["chroma"] < t["chroma_min"]:
        return Verdict(
            "chroma",
            "this looks like an X-ray or a black-and-white image, not a colour skin photo "
            f"(colour {stats['chroma']:.3f} < {t['chroma_min']:.3f}): send {wanted}, in colour",
        )
    if colour == "grey" and stats["chroma"] > t["chroma_max"]:
        return Verdict(
            "chroma",
            "this looks like a colour photo, not an X-ray "
            f"(colour {stats['chroma']:.3f} > {t['chroma_max']:.3f}): send {wanted}",
        )
    if stats["sharpness"] < t["sharpness_min"]:
        return Verdict(
            "sharpness",
            f"retake: out of focus (sharpness {stats['sharpness']:.3f} < "
            f"{t['sharpness_min']:.3f}): hold still and focus on the "
            + ("lesion" if colour == "colour" else "film"),
        )
    # A regular pattern in any direction (after the blur check: an out-of-focus image also
    # concentrates its energy in a few low frequencies).
    if stats["periodicity"] > t["periodicity_max"]:
        return _stripes(stats, wanted)
    distance = mahalanobis(stats, thresholds["reference"])
    if distance > t["distance_max"]:
        return Verdict(
            "distance",
            f"this does not look like {wanted} (its image statistics are far from the "
            f"training images': distance {distance:.1f} > {t['distance_max']:.1f}): send "
            f"{wanted}",
        )
    return None


def _stripes(stats: Mapping[str, float], wanted: str) -> Verdict:
    return Verdict(
        "stripes",
        "this is a stripe or line pattern, not a photograph of the patient "
        f"(one-axis variation {stats['stripes']:.3f}, periodic energy "
        f"{stats['periodicity']:.2f}): send {wanted}",
    )


def mahalanobis(stats: Mapping[str, float], reference: Mapping) -> float:
    names = tuple(reference["features"])
    delta = feature_vector(stats, names) - np.asarray(reference["mean"], dtype=np.float64)
    inverse = np.asarray(reference["inverse_covariance"], dtype=np.float64)
    return float(np.sqrt(max(0.0, float(delta @ inverse @ delta))))


@lru_cache(maxsize=16)
def _thresholds(path: Path) -> dict:
    return json.loads(path.read_text())


def thresholds_for(spec: ImageClassifier, directory: Path = WEIGHTS_DIR) -> dict:
    path = spec.quality_gate_path(directory)
    if not path.exists():
        raise FileNotFoundError(
            f"{path.name} is missing: run python -m inference.training.quality_gate"
        )
    return _thresholds(path)


def image_statistics(image: Image.Image, size: int) -> dict[str, float]:
    stats = statistics(model_view(image, size))
    width, height = image.size
    return {
        **stats,
        "width": float(width),
        "height": float(height),
        "min_side": float(min(width, height)),
    }


def verdict(
    spec: ImageClassifier, image: Image.Image, directory: Path = WEIGHTS_DIR
) -> Verdict | None:
    """Why ``spec``'s gate refuses ``image`` (None: it passes, or the model has no gate)."""
    if spec.quality is None:
        return None
    return judge(
        image_statistics(image, spec.input_size),
        spec.quality.min_side,
        thresholds_for(spec, directory),
        spec.quality.colour,
        spec.wanted,
    )


def check(spec: ImageClassifier, image: Image.Image, directory: Path = WEIGHTS_DIR) -> None:
    """Refuse ``image`` for ``spec`` (raise BadInput with the reason) unless it passes the
    model's gate; a model without a gate takes every image."""
    found = verdict(spec, image, directory)
    if found is not None:
        raise BadInput(found.reason)
