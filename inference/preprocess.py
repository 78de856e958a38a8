"""Image → tensor pre-processing, one function for training and prediction.

The training files hold images already centre-cropped to a square and resized (MedMNIST style);
a full-size upload (a 600×450 dermoscopy photo, a chest radiograph) goes through the same steps:
convert to the model's colour mode, centre-crop to a square on the short edge, resize (bilinear,
antialiased) to the model's input size, scale to ``[0, 1]``. Network-specific normalisation
happens inside the network (:class:`inference.networks.InputNormalisation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from inference.spec import ColourMode


def _to_pil(image: Image.Image | np.ndarray, mode: ColourMode) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert(mode)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {array.shape}")
    return Image.fromarray(array).convert(mode)


def _fit(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    if (width, height) == (size, size):
        return image
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BILINEAR)


def preprocess(
    images: Image.Image | np.ndarray | Sequence[Image.Image | np.ndarray],
    *,
    size: int,
    mode: ColourMode,
) -> torch.Tensor:
    """Turn one image or a batch into a float tensor ``(N, C, size, size)`` in ``[0, 1]``.

    ``images`` may be a PIL image, a uint8 array ``(H, W)`` / ``(H, W, C)``, a uint8 batch
    ``(N, H, W)`` / ``(N, H, W, C)`` or a sequence of any of these.
    """
    if isinstance(images, np.ndarray):
        grey_batch = mode == "L" and images.ndim == 3 and images.shape[2] not in (1, 3)
        if images.ndim == 4 or grey_batch:
            items: Sequence[Image.Image | np.ndarray] = list(images)
        else:
            items = [images]
    elif isinstance(images, Image.Image):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ValueError("no images to pre-process")
    channels = 3 if mode == "RGB" else 1
    batch = np.empty((len(items), size, size, channels), dtype=np.uint8)
    for i, item in enumerate(items):
        pixels = np.asarray(_fit(_to_pil(item, mode), size))
        batch[i] = pixels.reshape(size, size, channels)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
