"""Model builders: MLPs, small CNNs, and a way to match parameter counts.

Comparisons of depth are only fair at (nearly) equal parameter count, so
`match_params` picks the width that brings any width-parametrised builder closest to a
target count.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (those with ``requires_grad``).

    Returns: an int."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> nn.Sequential:
    """A fully connected network with layer sizes ``[inputs, hidden..., outputs]``, with
    dropout of rate `dropout` after each hidden activation when it is > 0.

    Inputs are flattened first, so the same MLP takes points (N×d) or images (N×C×H×W).
    ``net[:-1]`` computes the last hidden layer's features.

    Args: `sizes` ``[inputs, hidden..., outputs]``; `activation` a module class, built with no
    arguments; `dropout` in [0, 1).
    Returns: an nn.Sequential (nn.Flatten first).
    Shape: N × … (flattened to N × sizes[0]) → N × sizes[-1].
    """
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [activation(), nn.Dropout(dropout)] if dropout else [activation()]
    return nn.Sequential(*layers)


def cnn(channels: list[int], num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        hidden: int = 0, global_pool: bool = True, bn: bool = True) -> nn.Sequential:
    """A plain CNN: one 3×3 conv + BN + ReLU block per entry of `channels`, 2×2 max-pooling
    in each of the first two blocks (and every later second one) while the map is at least
    4 pixels wide, then global average
    pooling (or, with ``global_pool=False``, the flattened feature map), an optional hidden
    linear layer, and the classifier. ``bn=False`` drops batch normalisation (the
    convolutions then have biases).

    A pooled block is conv → max-pool → BN → ReLU: pooling commutes with ReLU and with
    BN's per-channel scaling (when positive), and pooling first leaves BN and ReLU a
    quarter of the work — 1.6× faster training on a 2-core CPU for ``cnn([16, 32, 64])``
    (10.1k against 6.3k samples/s, with in-place ReLU).

    Args: `channels` one entry per block; `in_channels`, `image_size` the input's (the size decides
    the pooling and, with ``global_pool=False``, the classifier's input); `hidden` units (0 = none).
    Returns: an nn.Sequential.
    Shape: N × in_channels × image_size × image_size → N × num_classes."""
    layers: list[nn.Module] = []
    size = image_size
    for i, (n_in, n_out) in enumerate(itertools.pairwise([in_channels, *channels])):
        layers.append(nn.Conv2d(n_in, n_out, 3, padding=1, bias=not bn))
        if (i < 2 or i % 2 == 1) and size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += [nn.BatchNorm2d(n_out), nn.ReLU(inplace=True)] if bn else [nn.ReLU(inplace=True)]
    features = channels[-1] if global_pool else channels[-1] * size * size
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if global_pool else [nn.Flatten()]
    if hidden:
        layers += [nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    else:
        layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def strided_cnn(num_classes: int = 10) -> nn.Sequential:
    """Wong et al. 2020's MNIST network for fast adversarial training: two 4×4 stride-2
    convolutions (16 and 32 channels, no pooling, no BN), a 100-unit hidden layer; 28×28
    grey images in.

    Returns: an nn.Sequential.
    Shape: N × 1 × 28 × 28 → N × num_classes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, num_classes))


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection (He et al. 2016); a 1×1 convolution
    on the skip path when the shape changes. `bn=False` drops batch normalisation;
    `skip=False` drops the skip connection (Li et al. 2018's "no-short" networks)."""

    def __init__(self, n_in: int, n_out: int, stride: int = 1, bn: bool = True, skip: bool = True):
        super().__init__()
        norm = nn.BatchNorm2d if bn else nn.Identity
        self.body = nn.Sequential(
            nn.Conv2d(n_in, n_out, 3, stride, 1, bias=not bn), norm(n_out), nn.ReLU(),
            nn.Conv2d(n_out, n_out, 3, 1, 1, bias=not bn), norm(n_out))
        if not skip:
            self.skip = None
        elif stride == 1 and n_in == n_out:
            self.skip = nn.Identity()
        else:
            self.skip = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=not bn), norm(n_out))

    def forward(self, x):
        """ReLU(body(x) + skip(x)), or ReLU(body(x)) without the skip connection.

        Shape: N × n_in × H × W → N × n_out × ⌈H / stride⌉ × ⌈W / stride⌉."""
        return (self.body(x) if self.skip is None else self.body(x) + self.skip(x)).relu()


class ResNet(nn.Module):
    """A small ResNet for 28×28 or 32×32 images: a 3×3 stem, one stage per entry of
    `channels` (each after the first halves the resolution), global average pooling, a
    linear classifier. ``forward(x, return_features=True)`` also returns the pooled
    features. `bn` and `skip` as in `ResidualBlock`."""

    def __init__(self, channels=(16, 32, 64), blocks: int = 1, num_classes: int = 10, in_channels: int = 1,
                 bn: bool = True, skip: bool = True):
        super().__init__()
        norm = nn.BatchNorm2d if bn else nn.Identity
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=not bn), norm(channels[0]),
                                   nn.ReLU()]
        for stage, (n_in, n_out) in enumerate(itertools.pairwise([channels[0], *channels])):
            for b in range(blocks):
                layers.append(ResidualBlock(n_in if b == 0 else n_out, n_out, 2 if stage and not b else 1, bn, skip))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels[-1], num_classes)

    def forward(self, x, return_features: bool = False):
        """Logits, and with ``return_features=True`` also the pooled features.

        Returns: logits, or (logits, features).
        Shape: N × in_channels × H × W → N × num_classes (features N × channels[-1])."""
        features = self.features(x)
        out = self.classifier(features)
        return (out, features) if return_features else out


def match_params(build: Callable[[int], nn.Module], target: int, max_width: int = 4096) -> nn.Module:
    """The model ``build(width)`` whose parameter count is closest to `target`.

    `build` must grow with width; the width is found by bisection.

    Args: `build` a function width → model, for widths 1 … `max_width`; `target` a parameter count.
    Returns: a new model, ``build(width)`` at the best width (ValueError when no width reaches `target`).
    Example: ``match_params(lambda w: mlp([784, w, w, 10]), count_params(cnn([16, 32])))``.
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


class MLPStack(nn.Module):
    """Independent ReLU MLPs of one shape, held as stacked tensors so that batched matmuls
    run them all: for many small networks (seeds, controls) on a CPU, where small separate
    matmuls use it poorly (six LeNet-300-100s at batch 60: 4.8 ms a step together, about
    1.7 ms each apart, on 2 cores). Built from `nblib.mlp` networks. Layer l's weights
    are stored ``in × copies × out``, so the first layer, whose input all copies share,
    is one wide matmul. `forward` maps a batch (N×...) to logits (copies×N×classes).

    Masks (buffers, all ones until `set_masks_`) are kept by zeroing: `set_masks_` zeroes
    the masked weights and training must zero their gradients (`mask_gradients_`), so
    they stay exactly zero under Adam or SGD without weight decay.
    """

    def __init__(self, nets: list[nn.Sequential]):
        super().__init__()
        layers = [[m for m in net if isinstance(m, nn.Linear)] for net in nets]
        if not nets or len({tuple(layer.weight.shape for layer in ls) for ls in layers}) != 1:
            raise ValueError("MLPStack needs one or more networks with the same layer sizes")
        depth = len(layers[0])
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().T for ls in layers], dim=1)) for i in range(depth))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach() for ls in layers])) for i in range(depth))
        for i, w in enumerate(self.weights):
            self.register_buffer(f"mask{i}", torch.ones_like(w))

    @property
    def copies(self) -> int:
        """The number of networks stacked (an int)."""
        return self.weights[0].shape[1]

    @property
    def masks(self) -> list[torch.Tensor]:
        """Per layer, ``in × copies × out``; 1 = kept."""
        return [getattr(self, f"mask{i}") for i in range(len(self.weights))]

    def set_masks_(self, layer_masks: list[torch.Tensor]) -> MLPStack:
        """Set the masks (shaped like the weights) and zero the masked weights, in place.

        Args: `layer_masks` one per layer, ``in × copies × out`` (1 = kept, 0 = masked).
        Returns: the stack."""
        with torch.no_grad():
            for w, mask, new in zip(self.weights, self.masks, layer_masks, strict=True):
                mask.copy_(new)
                w.mul_(mask)
        return self

    def mask_gradients_(self) -> MLPStack:
        """Zero the gradients of masked weights (call between `backward` and the step); every weight
        must have a ``.grad``.

        Returns: the stack."""
        for w, mask in zip(self.weights, self.masks, strict=False):
            w.grad.mul_(mask)
        return self

    def take_(self, other: MLPStack, which: torch.Tensor) -> MLPStack:
        """Copy, in place, the weights and biases of the copies where `which` is true from `other`.

        Args: `other` a stack of the same shape; `which` bool, shape (copies,), on the stack's device.
        Returns: the stack."""
        with torch.no_grad():
            for mine, theirs in zip(self.weights, other.weights, strict=False):
                mine.copy_(torch.where(which.view(1, -1, 1), theirs, mine))
            for mine, theirs in zip(self.biases, other.biases, strict=False):
                mine.copy_(torch.where(which.view(-1, 1), theirs, mine))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every copy's outputs (ReLU between layers, none after the last).

        Shape: N × … (flattened to N × in) → copies × N × out."""
        w0 = self.weights[0]
        h = (x.flatten(1) @ w0.flatten(1)).unflatten(1, w0.shape[1:]).transpose(0, 1) + self.biases[0].unsqueeze(1)
        for w, b in zip(self.weights[1:], self.biases[1:], strict=False):
            h = torch.bmm(torch.relu(h), w.transpose(0, 1)) + b.unsqueeze(1)
        return h

    def unstack(self) -> list[nn.Sequential]:
        """The copies as ordinary `nblib.mlp` networks.

        Returns: `copies` new ``mlp(sizes)`` networks (ReLU, no dropout), float32, on the CPU."""
        sizes = [self.weights[0].shape[0]] + [w.shape[2] for w in self.weights]
        nets = [mlp(sizes) for _ in range(self.copies)]
        with torch.no_grad():
            for m, net in enumerate(nets):
                linears = [layer for layer in net if isinstance(layer, nn.Linear)]
                for layer, w, b in zip(linears, self.weights, self.biases, strict=True):
                    layer.weight.copy_(w[:, m].T)
                    layer.bias.copy_(b[m])
        return nets
