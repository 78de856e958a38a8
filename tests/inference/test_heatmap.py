"""Grad-CAM explanations point at what raised the score: the map's maximum is its hottest
colour (MONAI's default normaliser flips it), and on validation lesions the peak falls inside a
classical lesion mask far more often than the flipped map's did."""

from __future__ import annotations

import numpy as np
import torch

from inference.heatmap import grad_cam, normalise
from inference.predict import load_model
from inference.preprocess import preprocess
from inference.segmentation import lesion_mask
from tests.shared import shared_path


def test_normalise_keeps_the_maximum_hottest():
    maps = torch.tensor([[[[0.0, 2.0], [4.0, 1.0]]], [[[3.0, 3.0], [3.0, 3.0]]]])
    out = normalise(maps)
    assert out[0, 0].tolist() == [[0.0, 0.5], [1.0, 0.25]]
    assert out[1].abs().sum() == 0  # a flat map says nothing: all cold


def test_lesion_mask_finds_a_dark_disc():
    rgb = np.full((64, 64, 3), (220, 170, 160), dtype=np.uint8)
    yy, xx = np.indices((64, 64))
    disc = np.hypot(yy - 30, xx - 34) < 12
    rgb[disc] = (90, 50, 40)
    mask = lesion_mask(rgb)
    assert mask is not None and (mask == disc).mean() > 0.97


def test_heatmap_peaks_inside_the_lesion():
    model = load_model("skin")
    with np.load(shared_path("data", "ml", "ham10000_onelesion_64_trainval.npz")) as data:
        images = data["val_images"][:24]
    batch = preprocess(images, size=64, mode="RGB")
    decided = model.postprocess(model.predict_logits(batch)).labels
    maps = grad_cam(model.network, batch, [int(c) for c in decided])
    assert maps.shape == (24, 64, 64) and maps.min() >= 0 and np.isclose(maps.max(), 1.0)
    inside = flipped = used = 0
    for rgb, cam in zip(images, maps, strict=True):
        mask = lesion_mask(rgb)
        if mask is None:
            continue
        used += 1
        inside += bool(mask[np.unravel_index(int(np.argmax(cam)), cam.shape)])
        flipped += bool(mask[np.unravel_index(int(np.argmin(cam)), cam.shape)])
    assert used >= 20
    assert inside / used >= 0.6 and flipped / used <= 0.25, (inside, flipped, used)
