"""Model builders: MLPs, small CNNs, and a way to match parameter counts.

Comparisons of depth are only fair at (nearly) equal parameter count, so
`match_params` picks the width that brings any width-parametrised builder closest to a
target count.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A fully connected network with layer sizes ``[inputs, hidden..., outputs]``.

    Inputs are flattened first, so the same MLP takes points (N×d) or images (N×C×H×W).
    """
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def cnn(channels: list[int], num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        hidden: int = 0, global_pool: bool = True) -> nn.Sequential:
    """A plain CNN: one 3×3 conv + BN + ReLU block per entry of `channels`, 2×2 max-pooling
    in each of the first two blocks (and every later second one), then global average
    pooling (or, with ``global_pool=False``, the flattened feature map), an optional hidden
    linear layer, and the classifier.

    A pooled block is conv → max-pool → BN → ReLU: pooling commutes with ReLU and with
    BN's per-channel scaling (when positive), and pooling first leaves BN and ReLU a
    quarter of the work — 1.6× faster training on a 2-core CPU for ``cnn([16, 32, 64])``
    (10.1k against 6.3k samples/s, with in-place ReLU)."""
    layers: list[nn.Module] = []
    size = image_size
    for i, (n_in, n_out) in enumerate(itertools.pairwise([in_channels, *channels])):
        layers.append(nn.Conv2d(n_in, n_out, 3, padding=1, bias=False))
        if (i < 2 or i % 2 == 1) and size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += [nn.BatchNorm2d(n_out), nn.ReLU(inplace=True)]
    features = channels[-1] if global_pool else channels[-1] * size * size
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if global_pool else [nn.Flatten()]
    if hidden:
        layers += [nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    else:
        layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection (He et al. 2016); a 1×1 convolution
    on the skip path when the shape changes. `bn=False` drops batch normalisation."""

    def __init__(self, n_in: int, n_out: int, stride: int = 1, bn: bool = True):
        super().__init__()
        norm = nn.BatchNorm2d if bn else nn.Identity
        self.body = nn.Sequential(
            nn.Conv2d(n_in, n_out, 3, stride, 1, bias=not bn), norm(n_out), nn.ReLU(),
            nn.Conv2d(n_out, n_out, 3, 1, 1, bias=not bn), norm(n_out))
        self.skip = nn.Identity() if stride == 1 and n_in == n_out else \
            nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=not bn), norm(n_out))

    def forward(self, x):
        return (self.body(x) + self.skip(x)).relu()


class ResNet(nn.Module):
    """A small ResNet for 28×28 or 32×32 images: a 3×3 stem, one stage per entry of
    `channels` (each after the first halves the resolution), global average pooling, a
    linear classifier. ``forward(x, return_features=True)`` also returns the pooled
    features."""

    def __init__(self, channels=(16, 32, 64), blocks: int = 1, num_classes: int = 10, in_channels: int = 1,
                 bn: bool = True):
        super().__init__()
        norm = nn.BatchNorm2d if bn else nn.Identity
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=not bn), norm(channels[0]),
                                   nn.ReLU()]
        for stage, (n_in, n_out) in enumerate(itertools.pairwise([channels[0], *channels])):
            for b in range(blocks):
                layers.append(ResidualBlock(n_in if b == 0 else n_out, n_out, 2 if stage and not b else 1, bn))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels[-1], num_classes)

    def forward(self, x, return_features: bool = False):
        features = self.features(x)
        out = self.classifier(features)
        return (out, features) if return_features else out


def match_params(build: Callable[[int], nn.Module], target: int, max_width: int = 4096) -> nn.Module:
    """The model ``build(width)`` whose parameter count is closest to `target`.

    `build` must grow with width; the width is found by bisection.
    """
    lo, hi = 1, max_width
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_params(build(mid)) <= target:
            lo = mid
        else:
            hi = mid
    narrow, wide = build(lo), build(hi)
    if count_params(narrow) > target or count_params(wide) < target:  # the target lies outside the widths
        raise ValueError(f"cannot match {target:,} parameters with widths 1 to {max_width}: they give "
                         f"{count_params(build(1)):,} to {count_params(build(max_width)):,}")
    return min((narrow, wide), key=lambda m: abs(count_params(m) - target))
