"""Measure where the Grad-CAM explanations point: the share of validation lesions whose heatmap
peak falls inside the lesion (no retraining).

The lesion mask is :func:`inference.segmentation.lesion_mask` (Otsu + morphology on the blue
channel, the same code that outlines lesions at analysis time) on the dermoscopy image as the
model sees it (64 px). Images whose segmentation fails (mask under 2 % or over 85 % of the
frame) are left out and counted. The heatmap is :func:`inference.heatmap.grad_cam` for the decided class; its
peak is the hottest pixel; "flipped" is where the overlay put its hottest colour before the
normaliser was fixed (the map's minimum: MONAI's default normaliser flips magnitudes). Baselines: the share of masks containing the image centre, and the
mean mask area (the chance that a random pixel falls inside).

    .venv/bin/python -m inference.training.heatmap_check [--limit 200] [--layer backbone.layer3]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from inference.heatmap import TARGET_LAYER, grad_cam
from inference.predict import load_model
from inference.preprocess import preprocess
from inference.segmentation import lesion_mask
from inference.training.common import REPO


def measure(limit: int | None, layer: str) -> dict:
    model = load_model("skin")
    data = REPO / model.metadata["data_file"]
    with np.load(data.resolve()) as npz:
        images = npz["val_images"][:limit]
    hits = flipped_hits = centre_hits = used = failed = 0
    areas = []
    for start in range(0, len(images), 32):
        chunk = images[start : start + 32]
        batch = preprocess(chunk, size=64, mode="RGB")
        decided = model.postprocess(model.predict_logits(batch)).labels
        maps = grad_cam(model.network, batch, [int(c) for c in decided], target_layer=layer)
        for rgb, cam in zip(chunk, maps, strict=True):
            mask = lesion_mask(rgb)
            if mask is None:
                failed += 1
                continue
            cam = torch.nn.functional.interpolate(
                torch.from_numpy(cam)[None, None], size=mask.shape, mode="bilinear"
            )[0, 0].numpy()
            y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
            used += 1
            hits += bool(mask[y, x])
            # What the overlay showed as hottest before the fix (MONAI's flipping normaliser).
            fy, fx = np.unravel_index(int(np.argmin(cam)), cam.shape)
            flipped_hits += bool(mask[fy, fx])
            centre_hits += bool(mask[mask.shape[0] // 2, mask.shape[1] // 2])
            areas.append(float(mask.mean()))
    return {
        "layer": layer,
        "images": int(len(images)),
        "segmented": used,
        "segmentation_failed": failed,
        "peak_inside_lesion": round(hits / used, 4) if used else None,
        "flipped_peak_inside_lesion": round(flipped_hits / used, 4) if used else None,
        "centre_inside_lesion": round(centre_hits / used, 4) if used else None,
        "mean_lesion_area": round(float(np.mean(areas)), 4) if areas else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="the first N validation images (default: all)")
    parser.add_argument("--layer", action="append", help=f"target layer(s) [{TARGET_LAYER}]")
    args = parser.parse_args(argv)
    for layer in args.layer or [TARGET_LAYER]:
        print(json.dumps(measure(args.limit, layer)))


if __name__ == "__main__":
    main()
