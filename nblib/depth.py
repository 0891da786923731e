"""Depth on functions of one variable: Telgarsky's sawtooth, the deep ReLU network that
computes it exactly, and the number of linear pieces a ReLU network makes.

Telgarsky (2016): the tent map composed k times is a sawtooth with 2^(k-1) teeth and 2^k
linear pieces. A ReLU network k layers deep and 2 units wide computes it exactly with
6k + 1 weights; a network with one hidden layer of w units has at most w + 1 pieces on a
line, so it needs 2^k − 1 units (3·2^k − 2 weights) to do the same.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def tent(x: torch.Tensor) -> torch.Tensor:
    """The tent map on [0, 1]: 2x up to 1/2, then 2(1 − x).

    Args: `x` a tensor of any shape.
    Returns: tent(x), elementwise, x's shape."""
    return 2 * torch.minimum(x, 1 - x)


def sawtooth(x: torch.Tensor, k: int) -> torch.Tensor:
    """The tent map composed `k` times: 2^(k-1) teeth on [0, 1].

    Args: `x` a tensor of any shape; `k` ≥ 1.
    Returns: the sawtooth, elementwise, x's shape."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    for _ in range(k):
        x = tent(x)
    return x


def sawtooth_net(k: int) -> nn.Sequential:
    """The ReLU network, `k` hidden layers of 2 units, that computes ``sawtooth(x, k)``
    exactly on [0, 1]: each layer forms relu(t) and relu(t − 1/2), and tent(t) = 2·relu(t)
    − 4·relu(t − 1/2) is folded into the next layer's weights.

    Args: `k` ≥ 1.
    Returns: an nn.Sequential of 6k + 1 float32 weights, mapping N × 1 to N × 1."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    layers: list[nn.Module] = [nn.Linear(1, 2), nn.ReLU()]
    for _ in range(k - 1):
        layers += [nn.Linear(2, 2), nn.ReLU()]
    layers.append(nn.Linear(2, 1))
    tent_weights = torch.tensor([2.0, -4.0])
    with torch.no_grad():
        for i, layer in enumerate(m for m in layers if isinstance(m, nn.Linear)):
            if i == 0:  # x → [x, x − 1/2]
                layer.weight.copy_(torch.ones(2, 1))
            elif i < k:  # t = tent(previous) → [t, t − 1/2]
                layer.weight.copy_(tent_weights.expand(2, 2))
            else:  # the last tent is the output
                layer.weight.copy_(tent_weights.unsqueeze(0))
            layer.bias.copy_(torch.tensor([0.0, -0.5]) if i < k else torch.zeros(1))
    return nn.Sequential(*layers)


@torch.no_grad()
def linear_pieces(net: nn.Module, lo: float = 0.0, hi: float = 1.0, points: int = 100_000) -> int:
    """How many linear pieces a ReLU network of one input makes on [lo, hi]: one more than
    the number of places, on a grid of `points`, where some unit switches on or off (a piece
    narrower than the grid spacing is missed). The grid is offset by an irrational fraction
    of a step and the network run in float64, so that no point lands exactly on a kink.

    Args: `net` a network of one input (N × 1) whose nonlinearities are nn.ReLU modules; it is run
    as a float64 copy on the CPU and left untouched; `lo`, `hi` the interval; `points` the grid's size.
    Returns: the number of pieces, an int ≥ 1."""
    if not any(isinstance(m, nn.ReLU) for m in net.modules()):
        raise ValueError("linear_pieces needs a network with nn.ReLU modules")
    net = copy.deepcopy(net).double().cpu()
    patterns: list[torch.Tensor] = []
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda _m, _i, out: patterns.append(out.flatten(1) > 0))
    offset = (3 - 5 ** 0.5) / 2  # the golden section: far from every dyadic fraction
    x = lo + (hi - lo) * (torch.arange(points, dtype=torch.float64) + offset) / points
    net(x.unsqueeze(1))
    pattern = torch.cat(patterns, dim=1)
    return int((pattern[1:] != pattern[:-1]).any(dim=1).sum()) + 1
