"""Building networks by name: each model of ``inference/models/`` declares its network factories
(MONAI backbones behind :class:`NormalisedClassifier`); :func:`build_network` finds them.

Each network takes images already pre-processed by :func:`inference.preprocess.preprocess`
(float tensors in ``[0, 1]``, shape ``(N, C, H, W)``) and normalises them itself with fixed
per-channel statistics of its training split, so the same tensors feed training and prediction
and the statistics travel inside the ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from inference.registry import network_factories


class InputNormalisation(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics stored as buffers."""

    # registered buffers (Module.__getattr__ types them as ``Tensor | Module``)
    mean: torch.Tensor
    std: torch.Tensor

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


def build_network(name: str) -> nn.Module:
    """Build the network registered under ``name`` by a model of ``inference/models/`` (untrained
    weights)."""
    networks = network_factories()
    try:
        factory = networks[name]
    except KeyError:
        raise KeyError(f"unknown network {name!r}; known: {sorted(networks)}") from None
    return factory()
