"""The MONAI network factory: every network Hearth ships is built here, by name.

Each network takes images already pre-processed by :func:`inference.preprocess.preprocess`
(float tensors in ``[0, 1]``, shape ``(N, C, H, W)``) and normalises them itself with fixed
per-channel statistics of its training split, so the same tensors feed training and prediction
and the statistics travel inside the ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.nets import ResNet
from torch import nn


class InputNormalisation(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics stored as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NormalisedClassifier(nn.Module):
    """A MONAI backbone behind an input normalisation; returns logits ``(N, classes)``."""

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalise = InputNormalisation(mean, std)
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalise(x))


# Per-channel mean / std of the training splits (pixel values scaled to [0, 1]).
HAM10000_64_MEAN = (0.7808, 0.5275, 0.5483)
HAM10000_64_STD = (0.1318, 0.1558, 0.1722)
PNEUMONIAMNIST_MEAN = (0.5719,)
PNEUMONIAMNIST_STD = (0.1684,)


def skin_resnet18(width: int = 32, stem_stride: int = 2) -> nn.Module:
    """MONAI 2-D ResNet-18 layout (basic blocks 2-2-2-2), first stage ``width`` channels (64 is
    the standard width), for 3×64×64 input. A 3×3 stem without max-pooling: stride 2 keeps
    32×32 feature maps in the first stage, stride 1 keeps 64×64 (four times the arithmetic).
    """
    backbone = ResNet(
        block="basic",
        layers=[2, 2, 2, 2],
        block_inplanes=[width, 2 * width, 4 * width, 8 * width],
        spatial_dims=2,
        n_input_channels=3,
        conv1_t_size=3,
        conv1_t_stride=stem_stride,
        no_max_pool=True,
        num_classes=7,
    )
    return NormalisedClassifier(backbone, HAM10000_64_MEAN, HAM10000_64_STD)


def skin_resnet18_w32() -> nn.Module:
    """The shipped skin network: half width, stride-2 stem."""
    return skin_resnet18(32, 2)


def pneumonia_resnet10_w16() -> nn.Module:
    """MONAI 2-D ResNet-10 layout (basic blocks 1-1-1-1) at quarter width, for 1×28×28 input."""
    backbone = ResNet(
        block="basic",
        layers=[1, 1, 1, 1],
        block_inplanes=[16, 32, 64, 128],
        spatial_dims=2,
        n_input_channels=1,
        conv1_t_size=3,
        conv1_t_stride=1,
        no_max_pool=True,
        num_classes=2,
    )
    return NormalisedClassifier(backbone, PNEUMONIAMNIST_MEAN, PNEUMONIAMNIST_STD)


NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "skin-resnet18-w32": skin_resnet18_w32,
    # Larger variants, compared in recipe sweeps (docs/models.md).
    "skin-resnet18-w48": lambda: skin_resnet18(48, 2),
    "skin-resnet18-w64": lambda: skin_resnet18(64, 2),
    "skin-resnet18-w32-s1": lambda: skin_resnet18(32, 1),
    "pneumonia-resnet10-w16": pneumonia_resnet10_w16,
}


def build_network(name: str) -> nn.Module:
    """Build the network registered under ``name`` (untrained weights)."""
    try:
        factory = NETWORKS[name]
    except KeyError:
        raise KeyError(f"unknown network {name!r}; known: {sorted(NETWORKS)}") from None
    return factory()
