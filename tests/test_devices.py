"""One rule for devices: the work runs on the model's device, results come back on the
input's device, and nothing moves the caller's model. "meta" tensors (shapes, no values)
are a second device on any machine; what needs values runs on a GPU when there is one."""

import pytest
import torch

import nblib
from nblib import data, landscape, saliency

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_bezier_curve_leaves_its_model_where_it_is():
    model = nblib.mlp([4, 3, 2])
    curve = landscape.BezierCurve(model, landscape.flat(model), landscape.flat(model) + 1)
    out = curve(torch.rand(5, 4).to("meta"))
    assert out.device == torch.device("meta") and out.shape == (5, 2)
    assert all(p.device == torch.device("cpu") for p in model.parameters())


@needs_cuda
def test_landscape_and_saliency_results_come_back_on_the_input_device():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 4, 4, generator=g).cuda(), torch.randint(3, (6,), generator=g).cuda()
    model = nblib.mlp([16, 5, 3])  # on the CPU: the work runs there, results go back to the GPU
    losses, accuracies = landscape.losses_at(model, landscape.flat(model).cuda(), data.TensorSet(x, y))
    assert losses.device.type == accuracies.device.type == "cuda"
    assert saliency.rank_correlation(x, x.flip(0)).device.type == "cuda"
    fractions, curve = saliency.deletion_curve(model, x, y, torch.rand_like(x), steps=2)
    assert fractions.device.type == curve.device.type == "cuda"
