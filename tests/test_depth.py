"""Telgarsky's sawtooth, its exact deep network, and counting linear pieces."""

import pytest
import torch

import nblib
from nblib import depth


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_the_hand_built_network_is_the_sawtooth(k):
    net = depth.sawtooth_net(k)
    x = torch.rand(5000, 1)
    assert torch.allclose(net(x), depth.sawtooth(x, k), atol=1e-5)
    assert nblib.count_params(net) == 6 * k + 1
    assert depth.linear_pieces(net) == 2 ** k


def test_sawtooth_has_its_teeth():
    x = torch.linspace(0, 1, 1025).unsqueeze(1)
    y = depth.sawtooth(x, 3).flatten()
    peaks = ((y[1:-1] > y[:-2]) & (y[1:-1] > y[2:])).sum().item() + int(y[-1] == 1)
    assert peaks == 4 and y.min() == 0 and y.max() == 1


def test_a_shallow_network_has_at_most_one_piece_more_than_units():
    torch.manual_seed(0)
    for width in [1, 5, 30]:
        net = nblib.mlp([1, width, 1])
        assert 1 <= depth.linear_pieces(net, -10, 10) <= width + 1


def test_pieces_of_a_known_network():
    net = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([-0.25, -0.75]))  # kinks at 0.25 and 0.75
    assert depth.linear_pieces(net) == 3
    assert depth.linear_pieces(net, 0.3, 0.7) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be at least 1"):
        depth.sawtooth_net(0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        depth.sawtooth(torch.zeros(1), 0)
    with pytest.raises(ValueError, match="nn.ReLU"):
        depth.linear_pieces(torch.nn.Linear(1, 1))
