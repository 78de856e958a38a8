"""Explanation heatmaps: MONAI Grad-CAM on the predicted class, drawn over the source image.

Grad-CAM (Selvaraju et al., ICCV 2017) weights the last convolutional stage's feature maps
(``backbone.layer4`` of every Hearth network) by the gradient of the class score; MONAI's
:class:`monai.visualize.GradCAM` computes it and upsamples it to the network's input size. The map
is then resized to the displayed image and blended with a jet colour scale into a PNG.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from monai.visualize import GradCAM
from PIL import Image
from torch import nn

TARGET_LAYER = "backbone.layer4"
DISPLAY_SIDE = 512  # longest side of the overlay PNG


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to ``[0, 1]`` with its maximum at 1 (a flat map: all 0). MONAI's own
    default, ``default_normalizer``, maps (min, max) to (1, 0) — it flips the magnitudes, which
    painted the lesion coolest and the skin around it hottest."""
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, *[1] * (maps.dim() - 1))
    high = flat.max(dim=1).values.view(-1, *[1] * (maps.dim() - 1))
    span = high - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def grad_cam(
    network: nn.Module, batch: torch.Tensor, classes: list[int], target_layer: str = TARGET_LAYER
) -> np.ndarray:
    """Class-activation maps ``(N, H, W)`` in ``[0, 1]`` for the given class of each item: the
    positive part of the gradient-weighted activations (hot = raised the class score)."""
    cam = GradCAM(nn_module=network, target_layers=target_layer, postprocessing=normalise)
    network.eval()
    maps = []
    with torch.enable_grad():
        for i, cls in enumerate(classes):
            out = cam(batch[i : i + 1].clone().requires_grad_(True), class_idx=int(cls))
            maps.append(out[0, 0].detach().cpu().numpy())
    return np.stack(maps)


def _jet(values: np.ndarray) -> np.ndarray:
    """The classic jet colour scale: ``(H, W)`` in ``[0, 1]`` → ``(H, W, 3)`` uint8."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay_png(image: Image.Image, cam: np.ndarray, *, alpha: float = 0.45) -> bytes:
    """``cam`` (any size, ``[0, 1]``) blended over ``image`` (centre-cropped square, as the model
    saw it), as PNG bytes."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    shown = image.crop((left, top, left + side, top + side))
    if side > DISPLAY_SIDE:  # shrink first: colour conversion and PNG coding work on 512 px
        shown = shown.resize(
            (DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0
        )
    shown = shown.convert("RGB")
    heat = Image.fromarray((np.clip(cam, 0, 1) * 255).astype(np.uint8), mode="L").resize(
        shown.size, Image.Resampling.BILINEAR
    )
    coloured = Image.fromarray(_jet(np.asarray(heat, dtype=np.float32) / 255.0), mode="RGB")
    blended = Image.blend(shown, coloured, alpha)
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG", compress_level=1)  # speed over a few kB
    return buffer.getvalue()
