"""Fit each image model's quality gate on its training images and measure it (no retraining).

For every model that declares a :class:`~inference.spec.QualityGate`, the statistics of
:mod:`inference.quality` are computed on the model's **training** split (the images as the model
sees them); each threshold is the training quantile ``q`` (the declared ``quantile``: a lower
bound at ``q``, an upper bound at ``1 − q``), and the Mahalanobis reference is the training
statistics' mean and covariance. The gate is then measured on the **validation** split (its
false-refusal rate on real lesions / real X-rays, overall and by check) and on a set of bad images
made here (``bad_images``: stripes — the ISIC "UDA-1" 250×250 placeholders among them — solid
colours, blur, dark, over-exposed, tiny, noise, and the other model's images).

    .venv/bin/python -m inference.training.quality_gate            # every gated model
    .venv/bin/python -m inference.training.quality_gate --model skin

Writes ``inference/weights/<model>.quality_gate.json`` (thresholds, reference, figures) and
prints the model-card table (docs/models.md, "Image-quality gate").
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from inference.images import dicom_image, read_dicom
from inference.quality import FEATURES, feature_vector, image_statistics, judge, mahalanobis
from inference.registry import MODELS
from inference.spec import WEIGHTS_DIR, ImageClassifier
from inference.training.common import REPO, relative_to_repo

SHARED_DATA = REPO.parent / "shared" / "data"
# A grey image saved as an RGB JPEG keeps a little chroma noise (4:2:0 subsampling); a radiograph
# model refuses colour only above this floor, whatever its (all-grey) training data says.
CHROMA_FLOOR = 0.04


def split_images(spec: ImageClassifier, split: str) -> np.ndarray:
    data = REPO / spec.metadata()["data_file"]
    with np.load(data.resolve()) as npz:
        return npz[f"{split}_images"]


def _pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(array, dtype=np.uint8))


def all_statistics(spec: ImageClassifier, images: list[Image.Image]) -> list[dict[str, float]]:
    return [image_statistics(image, spec.input_size) for image in images]


def features_for(spec: ImageClassifier) -> tuple[str, ...]:
    """The statistics in the Mahalanobis reference (a grey model's chroma is constant: left out)."""
    assert spec.quality is not None
    return (
        FEATURES if spec.quality.colour == "colour" else tuple(f for f in FEATURES if f != "chroma")
    )


def fit(spec: ImageClassifier, stats: list[dict[str, float]]) -> dict:
    assert spec.quality is not None
    q = spec.quality.quantile

    def col(name: str) -> np.ndarray:
        return np.array([s[name] for s in stats], dtype=np.float64)

    def low(name: str) -> float:
        return round(float(np.quantile(col(name), q)), 6)

    def high(name: str) -> float:
        return round(float(np.quantile(col(name), 1 - q)), 6)

    names = features_for(spec)
    vectors = np.stack([feature_vector(s, names) for s in stats])
    mean = vectors.mean(axis=0)
    covariance = np.cov(vectors, rowvar=False) + 1e-9 * np.eye(len(names))
    reference = {
        "features": list(names),
        "mean": [round(float(v), 8) for v in mean],
        "inverse_covariance": [
            [round(float(v), 8) for v in row] for row in np.linalg.inv(covariance)
        ],
    }
    distances = np.array([mahalanobis(s, reference) for s in stats])
    thresholds = {
        "min_side": spec.quality.min_side,
        "contrast_min": low("contrast"),
        "brightness_min": low("brightness"),
        "brightness_max": high("brightness"),
        "stripes_min": low("stripes"),
        "periodicity_max": high("periodicity"),
        "sharpness_min": low("sharpness"),
        "distance_max": round(float(np.quantile(distances, 1 - q)), 4),
    }
    if spec.quality.colour == "colour":
        thresholds["chroma_min"] = low("chroma")
    else:
        thresholds["chroma_max"] = max(high("chroma"), CHROMA_FLOOR)
    return {"thresholds": thresholds, "reference": reference}


def refusals(spec: ImageClassifier, gate: dict, stats: list[dict[str, float]]) -> Counter:
    """How many of ``stats`` each check refuses (the first failing check counts)."""
    assert spec.quality is not None
    found: Counter = Counter()
    for s in stats:
        verdict = judge(s, spec.quality.min_side, gate, spec.quality.colour, spec.wanted)
        found[verdict.check if verdict else "passed"] += 1
    return found


# -- bad images ----------------------------------------------------------------------------------
def _stripes(size: int, period: int, angle: str, colours: tuple, seed: int) -> Image.Image:
    yy, xx = np.mgrid[:size, :size]
    coordinate = {"vertical": xx, "horizontal": yy, "diagonal": xx + yy}[angle]
    band = (coordinate // max(1, period // 2)) % len(colours)
    palette = np.array(colours, dtype=np.uint8)
    image = palette[band]
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 2.0, image.shape)
    return _pil(np.clip(image + noise, 0, 255))


def _skin_photos() -> list[Image.Image]:
    return [
        Image.open(path).convert("RGB")
        for path in sorted((SHARED_DATA / "skin_photos").glob("*.jpg"))
    ]


def _chest_radiograph() -> Image.Image:
    return dicom_image(read_dicom((SHARED_DATA / "dicom" / "RG1_UNCR.dcm").read_bytes()))


def _upscaled(array: np.ndarray, side: int = 256) -> Image.Image:
    return _pil(array).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)


def real_images(spec: ImageClassifier, count: int = 12) -> list[Image.Image]:
    """Real full-size inputs the gate must pass: the shared full-size photos (skin) or the adult
    chest CR (pneumonia), and validation images upscaled (the upload sizes of a camera)."""
    assert spec.quality is not None
    if spec.quality.colour == "colour":
        real = _skin_photos()
        return real + [_upscaled(a, 450) for a in split_images(spec, "val")[::60][: count - 2]]
    real = [_chest_radiograph().convert("RGB")]
    return real + [_upscaled(a, 448) for a in split_images(spec, "val")[::45][: count - 1]]


def bad_images(spec: ImageClassifier, per_kind: int = 12) -> dict[str, list[Image.Image]]:
    """Images ``spec`` must refuse, by kind (deterministic; reads ../shared/data)."""
    assert spec.quality is not None
    rng = np.random.default_rng(7)
    colour = spec.quality.colour == "colour"
    real = real_images(spec, per_kind)
    palettes = [((200, 150, 140), (90, 60, 50)), ((255, 255, 255), (0, 0, 0)),
                ((180, 120, 110), (160, 110, 100), (60, 40, 30))]  # fmt: skip
    stripes = [
        _stripes(250, period, angle, palettes[n % 3], n)
        for n, (period, angle) in enumerate(
            [(p, a) for p in (4, 10, 26, 60) for a in ("vertical", "horizontal", "diagonal")]
        )
    ][:per_kind]
    placeholders = sorted((SHARED_DATA / "isic_uda1_cc0").glob("ISIC_*.jpg"))[:per_kind]
    solid = [
        Image.new("RGB", (300, 240), tuple(int(v) for v in rng.integers(0, 256, 3)))
        for _ in range(per_kind)
    ]
    noise = [_pil(rng.integers(0, 256, (240, 240, 3))) for _ in range(per_kind // 2)]
    noise += [
        _pil(np.clip(rng.normal(128, 40, (240, 240, 1)).repeat(3, axis=2), 0, 255))
        for _ in range(per_kind // 2)
    ]
    kinds: dict[str, list[Image.Image]] = {
        "stripes (generated)": stripes,
        "stripes (ISIC UDA-1 placeholders)": [Image.open(p).convert("RGB") for p in placeholders],
        "solid colour": solid,
        "noise": noise,
        # Blur by a Gaussian of 4 % of the short side (an unfocused phone or camera).
        "blurred": [r.filter(ImageFilter.GaussianBlur(radius=0.04 * min(r.size))) for r in real],
        "dark": [_pil(np.asarray(r, dtype=np.float64) * 0.12) for r in real],
        "over-exposed": [
            _pil(np.clip(np.asarray(r, dtype=np.float64) * 2.6 + 60, 0, 255)) for r in real
        ],
        "tiny": [r.resize((24, 18)) for r in real],
    }
    if colour:
        xrays = [_chest_radiograph().convert("RGB")]
        xrays += [_upscaled(a) for a in split_images(MODELS["pneumonia"], "val")[::40]][
            : per_kind - 1
        ]
        kinds["chest X-ray"] = xrays
    else:
        photos = _skin_photos()
        photos += [_upscaled(a) for a in split_images(MODELS["skin"], "val")[::40]][: per_kind - 2]
        kinds["skin photo"] = photos
        kinds["stripes (ISIC UDA-1 placeholders)"] = kinds["stripes (ISIC UDA-1 placeholders)"]
    return kinds


# -- the whole run -------------------------------------------------------------------------------
def run(spec: ImageClassifier, out: Path) -> dict:
    assert spec.quality is not None
    train = all_statistics(spec, [_pil(a) for a in split_images(spec, "train")])
    gate = fit(spec, train)
    val_images = split_images(spec, "val")
    val = all_statistics(spec, [_pil(a) for a in val_images])
    val_refused = refusals(spec, gate, val)
    train_refused = refusals(spec, gate, train)
    real = refusals(spec, gate, all_statistics(spec, real_images(spec)))
    bad = {
        kind: refusals(spec, gate, all_statistics(spec, images))
        for kind, images in bad_images(spec).items()
    }
    result = {
        "model": spec.name,
        "colour": spec.quality.colour,
        "quantile": spec.quality.quantile,
        "data_file": spec.metadata()["data_file"],
        **gate,
        "figures": {
            "train": _rate(train_refused),
            "val": _rate(val_refused),
            "real_full_size": _rate(real),
            "bad": {kind: _rate(found) for kind, found in bad.items()},
        },
        "command": f".venv/bin/python -m inference.training.quality_gate --model {spec.name}",
    }
    path = spec.quality_gate_path(out)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {relative_to_repo(path)}")
    return result


def _rate(found: Counter) -> dict:
    total = sum(found.values())
    refused = total - found.get("passed", 0)
    return {
        "n": total,
        "refused": refused,
        "rate": round(refused / total, 4) if total else None,
        "by_check": {k: v for k, v in sorted(found.items()) if k != "passed"},
    }


def table(result: dict) -> str:
    f = result["figures"]
    lines = [
        f"**{result['model']}** (thresholds at the training quantile {result['quantile']}):",
        "",
        "| images | n | refused | rate | by check |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("training split (real; fits the thresholds)", f["train"]),
        ("**validation split (real)**", f["val"]),
        ("real, full size (shared photos / chest CR, upscaled validation images)",
         f["real_full_size"]),
    ]  # fmt: skip
    rows += [(f"bad: {kind}", v) for kind, v in f["bad"].items()]
    for name, v in rows:
        checks = ", ".join(f"{k} {n}" for k, n in v["by_check"].items()) or "—"
        lines.append(f"| {name} | {v['n']} | {v['refused']} | {v['rate']:.3f} | {checks} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a gated model (default: all)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    names = args.model or [n for n, s in MODELS.items() if s.quality is not None]
    for name in names:
        spec = MODELS[name]
        if spec.quality is None:
            raise SystemExit(f"{name} declares no quality gate")
        print(table(run(spec, args.out)))


if __name__ == "__main__":
    main()
