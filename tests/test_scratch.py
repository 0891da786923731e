"""nblib.scratch: numpy networks checked by finite differences and against torch autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nblib
from nblib import scratch


def small_batch(seed=0, n=6, d=10, classes=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


@pytest.mark.parametrize("build", [
    lambda: scratch.softmax_classifier(10, 4, reg=0.3, seed=1),
    lambda: scratch.two_layer_net(10, 7, 4, reg=0.3, seed=1),
])
def test_backward_matches_finite_differences(build):
    net = build().astype_(np.float64)
    x, y = small_batch()
    _, grads, _ = net.loss(x, y)
    errors = scratch.grad_check(lambda: net.loss(x, y)[0], net.params, grads)
    assert set(errors) == set(net.params) and max(errors.values()) < 1e-6, errors


def test_input_gradient_matches_finite_differences():
    net = scratch.two_layer_net(10, 7, 4, seed=2).astype_(np.float64)
    x, y = small_batch(3)
    _, _, dx = net.loss(x, y)
    errors = scratch.grad_check(lambda: net.loss(x, y)[0], {"x": x}, {"x": dx})
    assert errors["x"] < 1e-6


def test_backward_matches_torch_autograd():
    net = scratch.two_layer_net(10, 7, 4, reg=0.1, seed=3).astype_(np.float64)
    x, y = small_batch(4)
    loss, grads, dx = net.loss(x, y)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    tx = torch.tensor(x, requires_grad=True)
    hidden = (tx @ tensors["0.W"] + tensors["0.b"]).relu()
    t_loss = F.cross_entropy(hidden @ tensors["2.W"] + tensors["2.b"], torch.tensor(y)) + \
        0.05 * (tensors["0.W"].square().sum() + tensors["2.W"].square().sum())
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for name, t in tensors.items():
        np.testing.assert_allclose(grads[name], t.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_sgd_learns_real_digits():
    train, test = nblib.load("digits")
    x, y = train.x.flatten(1).numpy(), train.y.numpy()
    xt, yt = test.x.flatten(1).numpy(), test.y.numpy()
    mean = x.mean(0)  # centred inputs: without it, plain SGD gets 72% here in 10 epochs
    x, xt = x - mean, xt - mean
    net = scratch.two_layer_net(x.shape[1], 64, 10, seed=0)
    history = scratch.sgd(net, x, y, epochs=10, lr=0.1, batch_size=64, lr_decay=0.95, val=(xt, yt))
    assert history.train_loss[-1] < history.train_loss[0] and history.val_acc[-1] > 0.85
    assert net.params["0.W"].dtype == np.float32


def test_sgd_stops_after_the_given_number_of_updates():
    x, y = small_batch(n=50)
    net = scratch.softmax_classifier(10, 4)
    history = scratch.sgd(net, x.astype(np.float32), y, epochs=10**6, lr=0.1, batch_size=10, steps=7)
    assert history.steps == 7 and len(history.train_loss) == 2  # stops there, not after a million epochs


def test_a_targeted_step_moves_predictions_towards_the_target():
    train, _ = nblib.load("digits")
    x, y = train.x.flatten(1).numpy(), train.y.numpy()
    net = scratch.two_layer_net(x.shape[1], 64, 10, seed=0)
    scratch.sgd(net, x, y, epochs=10, lr=0.1, batch_size=64)
    target = (y + 1) % 10
    fooled = scratch.fooling_step(net, x, target, 0.2, 0.0, 1.0)
    assert np.abs(fooled - x).max() <= 0.2 + 1e-6 and fooled.min() >= 0 and fooled.max() <= 1
    assert (net.predict(fooled) == target).mean() > (net.predict(x) == target).mean() + 0.3


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((3, 9)), np.zeros(3, int), r"x must be N × 10"),
    (np.zeros((3, 10)), np.zeros(4, int), r"y must hold one integer class per row of x \(3\)"),
])
def test_bad_shapes_and_labels_name_the_argument(x, y, message):
    with pytest.raises(ValueError, match=message):
        scratch.softmax_classifier(10, 4).loss(x, y)


def test_float_labels_are_a_type_error_as_in_every_module():
    with pytest.raises(TypeError, match="y must hold integer classes, got float64"):
        scratch.softmax_classifier(10, 4).loss(np.zeros((3, 10)), np.zeros(3))


def test_bad_training_settings_and_divergence_say_so():
    x, y = small_batch(n=20)
    with pytest.raises(ValueError, match="finite lr > 0"):
        scratch.sgd(scratch.softmax_classifier(10, 4), x, y, epochs=1, lr=float("nan"))
    with pytest.raises(FloatingPointError, match="lower the learning rate"), np.errstate(all="ignore"):
        scratch.sgd(scratch.two_layer_net(10, 7, 4), 1e20 * x, y, epochs=3, lr=1e10)


def test_scratch_imports_no_torch():
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(scratch))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    assert "torch" not in imported
