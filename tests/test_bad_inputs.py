"""Issue 34: inputs that used to give silent nonsense (n − 1 items, ECE 0.0, class 0 for
NaN images, a division by zero) are refused with one line naming what is wrong."""

import numpy as np
import pytest
import torch
from torch import nn

from nblib import data, gan, landscape, metrics, models, pruning, saliency, scratch

NAN = float("nan")


def test_metrics_refuse_nan_or_infinite_logits():
    y = torch.tensor([0, 1])
    for bad in (NAN, float("inf")):
        logits = torch.tensor([[bad, 0.0], [0.0, 1.0]])
        with pytest.raises(ValueError, match="logits hold 1 NaN or infinite values"):
            metrics.expected_calibration_error(logits, y)


def _digits(n=40, seed=0):
    g = np.random.default_rng(seed)
    return g.random((n, 6)).astype(np.float32), g.integers(0, 3, n)


def test_scratch_refuses_labels_outside_its_classes():
    net, (x, y) = scratch.two_layer_net(6, 5, 3), _digits()
    y[0] = -1  # numpy would take it as the last class
    with pytest.raises(ValueError, match=r"y must hold classes 0..2, got -1 to 2"):
        net.loss(x, y)


def test_scratch_blames_nan_inputs_not_the_learning_rate():
    net, (x, y) = scratch.two_layer_net(6, 5, 3), _digits()
    x[3, 2] = NAN
    with pytest.raises(ValueError, match="x holds 1 NaN or infinite values"):
        scratch.sgd(net, x, y, epochs=1, lr=0.1)


@pytest.mark.parametrize("decay", [-1.0, 0.0, NAN])
def test_scratch_refuses_a_learning_rate_decay_that_is_not_a_positive_factor(decay):
    with pytest.raises(ValueError, match="lr_decay must be a finite factor > 0"):
        scratch.sgd(scratch.two_layer_net(6, 5, 3), *_digits(), epochs=1, lr=0.1, lr_decay=decay)


@pytest.mark.parametrize("reg", [-5.0, NAN])
def test_scratch_refuses_a_negative_regularisation(reg):
    with pytest.raises(ValueError, match="reg must be a finite number ≥ 0"):
        scratch.two_layer_net(6, 5, 3, reg=reg)


def test_scratch_casts_in_place_under_a_trailing_underscore():
    net = scratch.two_layer_net(6, 5, 3)
    assert net.astype_(np.float64) is net and all(p.dtype == np.float64 for p in net.params.values())
    assert not hasattr(net, "astype")


def _probe(n=8):
    g = torch.Generator().manual_seed(0)
    return data.TensorSet(torch.rand(n, 1, 4, 4, generator=g), torch.randint(3, (n,), generator=g), ["a", "b", "c"])


def test_landscape_refuses_zero_iterations_and_empty_data():
    model = models.mlp([16, 5, 3])
    with pytest.raises(ValueError, match="iterations must be a positive int, got 0"):
        landscape.top_hessian_eigenvalue(model, _probe(), iterations=0)
    empty = data.TensorSet(torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long), ["a", "b", "c"])
    with pytest.raises(ValueError, match="losses_at needs points and data, got 1 points and 0 samples"):
        landscape.losses_at(model, landscape.flat(model), empty)


def test_the_judge_refuses_nan_images():
    images = torch.rand(2, 1, 28, 28)
    images[1, 0, 3, 3] = NAN
    with pytest.raises(ValueError, match="NaN or infinite pixels"):
        gan.judge_predict(nn.Identity(), images)  # refused before the judge is called


def test_mode_coverage_refuses_labels_beyond_its_classes():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\], got 0 to 12"):
        gan.mode_coverage(torch.tensor([0, 3, 12]))


def test_a_discriminator_needs_a_width():
    with pytest.raises(ValueError, match="Discriminator needs width ≥ 1"):
        gan.Discriminator(width=0)


@pytest.mark.parametrize("sigma", [0.0, -1.0, NAN])
def test_blur_needs_a_positive_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be a positive number of pixels"):
        saliency.blur(torch.rand(1, 1, 8, 8), sigma)


def test_saliency_refuses_nan_baselines_and_fills():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = _probe(2).x, torch.tensor([0, 1])
    with pytest.raises(ValueError, match="baseline holds NaN"):
        saliency.integrated_gradients(model, x, y, baseline=torch.full_like(x, NAN), steps=2)
    with pytest.raises(ValueError, match="fill must be a finite pixel value"):
        saliency.deletion_curve(model, x, y, torch.rand_like(x), steps=2, fill=NAN)
    with pytest.raises(ValueError, match="start holds NaN"):
        saliency.insertion_curve(model, x, y, torch.rand_like(x), steps=2, start=torch.full_like(x, NAN))


@pytest.mark.parametrize("setting, message", [({"eval_every": 0}, "eval_every must be a positive int"),
                                              ({"epochs": 0}, "epochs must be a positive int"),
                                              ({"lr": -1.0}, "lr must be a finite number > 0")])
def test_lottery_tickets_refuse_settings_that_train_nothing(setting, message):
    probe = _probe()
    with pytest.raises(ValueError, match=message):
        pruning.lottery_tickets([16, 5, 3], probe, probe, probe, rounds=1, **setting)


def test_apply_masks_takes_zeros_and_ones_only():
    model = models.mlp([16, 5, 3])
    layer_masks = pruning.masks(model)
    first = next(iter(layer_masks))
    with pytest.raises(ValueError, match=f"the mask of '{first}' holds values other than 0 and 1"):
        pruning.apply_masks_(model, layer_masks | {first: torch.full_like(layer_masks[first], 0.5)})
    with pytest.raises(ValueError, match="need one mask per prunable layer"):
        pruning.apply_masks_(model, {first: layer_masks[first]})
    assert pruning.apply_masks_(model, layer_masks) is model
