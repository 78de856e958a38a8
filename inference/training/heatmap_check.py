"""Measure where the Grad-CAM explanations point: the share of validation lesions whose heatmap
peak falls inside the lesion (no retraining).

The lesion mask is classical segmentation of the dermoscopy image as the model sees it (64 px):
the blue channel (where pigmented lesions contrast most with skin), a 3×3 mean filter, Otsu's
threshold (darker than it: lesion), a 3×3 opening then closing, holes filled, and the connected
component nearest the image centre kept. Images whose mask covers under 2 % or over 85 % of the
frame (segmentation failed: the lesion fills the frame or is not darker than the skin) are left
out and counted. The heatmap is :func:`inference.heatmap.grad_cam` for the decided class; its
peak is the hottest pixel; "flipped" is where the overlay put its hottest colour before the
normaliser was fixed (the map's minimum: MONAI's default normaliser flips magnitudes). Baselines: the share of masks containing the image centre, and the
mean mask area (the chance that a random pixel falls inside).

    .venv/bin/python -m inference.training.heatmap_check [--limit 200] [--layer backbone.layer3]
"""

from __future__ import annotations

import argparse
import json
from collections import deque

import numpy as np
import torch

from inference.heatmap import TARGET_LAYER, grad_cam
from inference.predict import load_model
from inference.preprocess import preprocess
from inference.training.common import REPO

MIN_AREA, MAX_AREA = 0.02, 0.85


def otsu(values: np.ndarray) -> float:
    histogram = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256)
    total = histogram.sum()
    cumulative = np.cumsum(histogram)
    weighted = np.cumsum(histogram * np.arange(256))
    best, threshold = -1.0, 0
    for t in range(255):
        w0 = cumulative[t]
        w1 = total - w0
        if w0 == 0 or w1 == 0:
            continue
        m0 = weighted[t] / w0
        m1 = (weighted[-1] - weighted[t]) / w1
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, threshold = between, t
    return float(threshold)


def _shift_stack(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    return np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def erode(mask: np.ndarray) -> np.ndarray:
    return np.asarray(_shift_stack(mask).all(axis=0))


def dilate(mask: np.ndarray) -> np.ndarray:
    return np.asarray(_shift_stack(mask).any(axis=0))


def components(mask: np.ndarray) -> list[np.ndarray]:
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        part = np.zeros_like(mask, dtype=bool)
        queue = deque([(y0, x0)])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            part[y, x] = True
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        found.append(part)
    return found


def fill_holes(mask: np.ndarray) -> np.ndarray:
    outside = np.zeros_like(mask, dtype=bool)
    border = ~mask
    edge = np.zeros_like(mask, dtype=bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    for part in components(border):
        if (part & edge).any():
            outside |= part
    return ~outside


def lesion_mask(rgb: np.ndarray) -> np.ndarray | None:
    """The lesion in an (H, W, 3) uint8 dermoscopy image, or None when segmentation fails."""
    blue = rgb[..., 2].astype(np.float64)
    padded = np.pad(blue, 1, mode="edge")
    h, w = blue.shape
    smooth = np.zeros_like(blue)
    for dy in range(3):
        for dx in range(3):
            smooth += padded[dy : dy + h, dx : dx + w] / 9.0
    mask = np.asarray(smooth <= otsu(smooth))
    mask = dilate(erode(mask))  # opening
    mask = erode(dilate(mask))  # closing
    mask = fill_holes(mask)
    parts = components(mask)
    if not parts:
        return None
    grid = np.indices(mask.shape)
    yy, xx = grid[0], grid[1]
    centre = ((h - 1) / 2, (w - 1) / 2)

    def distance(part: np.ndarray) -> float:
        return float(np.min(np.hypot(yy[part] - centre[0], xx[part] - centre[1])))

    chosen = min(parts, key=lambda p: (distance(p), -int(p.sum())))
    area = chosen.mean()
    return chosen if MIN_AREA <= area <= MAX_AREA else None


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
