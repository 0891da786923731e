"""nblib.landscape: exact cases, two curvature methods against each other, real digits."""

import copy

import pytest
import torch

import nblib
from nblib import data, landscape, models


@pytest.fixture(scope="module")
def digits_pair():
    """Two small MLPs trained from one start on scikit-learn's real digits, and the data."""
    nblib.setup("test_chapter", "smoke", 0, device="cpu")
    train, test = nblib.load("digits")
    torch.manual_seed(0)
    start = nblib.mlp([784, 16, 10])
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    nblib.fit(a, train, epochs=2, lr=0.1, batch_size=32, progress=False)
    nblib.fit(b, train, epochs=2, lr=0.3, batch_size=256, progress=False)
    return start, a, b, train, test


def test_flat_round_trip_and_shape_check(digits_pair):
    start, a, _, _, _ = digits_pair
    work = copy.deepcopy(start)
    landscape.load_flat_(work, landscape.flat(a))
    assert torch.equal(landscape.flat(work), landscape.flat(a)) and landscape.flat(a).numel() == nblib.count_params(a)
    with pytest.raises(ValueError, match="trainable parameters"):
        landscape.load_flat_(work, torch.zeros(3))


def test_interpolation_endpoints_reproduce_both_models(digits_pair):
    _, a, b, _, test = digits_pair
    points = landscape.interpolation(landscape.flat(a), landscape.flat(b), [0.0, 1.0])
    losses, accuracies = landscape.losses_at(a, points, test)
    for i, model in enumerate((a, b)):
        loss, accuracy = nblib.evaluate(model, test)
        assert losses[i].item() == pytest.approx(loss, rel=1e-5) and accuracies[i].item() == pytest.approx(accuracy)
    assert torch.equal(landscape.flat(a), points[0])  # the model itself was not changed


def test_plane_is_row_major_around_theta():
    theta, d1, d2 = torch.zeros(2), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    grid = landscape.plane(theta, d1, d2, [-1, 1], [0, 2])
    assert grid.tolist() == [[-1, 0], [-1, 2], [1, 0], [1, 2]]


def test_filter_normalisation_gives_each_filter_its_weights_norm():
    model = models.cnn([4, 8], bn=True)
    d = landscape.filter_normalised_direction(model, torch.Generator().manual_seed(0))
    work = copy.deepcopy(model)
    landscape.load_flat_(work, d)
    for (name, p), q in zip(model.named_parameters(), work.parameters(), strict=True):
        if p.dim() >= 2:
            assert torch.allclose(q.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5), name
        else:
            assert not q.any(), f"{name}: biases and BN parameters get no direction"


def test_hessian_of_a_quadratic_is_exact():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(50, 3, generator=g), torch.randn(3, 1, generator=g)
    model = torch.nn.Linear(3, 1, bias=False)
    points = data.TensorSet(x, x @ w)
    expected = torch.linalg.eigvalsh((2 / len(x)) * x.T.double() @ x.double())  # of mean (w·x − y)²
    assert torch.allclose(landscape.hessian_eigenvalues(model, points), expected, rtol=1e-5)
    assert landscape.top_hessian_eigenvalue(model, points, iterations=100) == pytest.approx(expected[-1].item(),
                                                                                          rel=1e-4)


def test_power_iteration_finds_the_exact_top_eigenvalue(digits_pair):
    _, a, _, train, _ = digits_pair
    tiny = nblib.mlp([784, 4, 10])
    nblib.fit(tiny, train, epochs=1, lr=0.1, batch_size=64, progress=False)
    part = train.subset(300, 0)
    exact = landscape.hessian_eigenvalues(tiny, part)
    top = exact[exact.abs().argmax()].item()
    assert landscape.top_hessian_eigenvalue(tiny, part, iterations=200, batch_size=128) == pytest.approx(top,
                                                                                                        rel=1e-3)


def test_input_jacobian_norm_of_a_linear_softmax_model():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    x = torch.zeros(3, 2)  # softmax (0.5, 0.5): d p0 / d x0 = 0.25, d p1 / d x0 = -0.25
    assert torch.allclose(landscape.input_jacobian_norm(model, x), torch.full((3,), 0.5 ** 0.5 / 2))


def test_bezier_curve_ends_at_both_solutions_and_trains_only_its_bend(digits_pair):
    _, a, b, train, _ = digits_pair
    curve = landscape.BezierCurve(a, landscape.flat(a), landscape.flat(b))
    ends = curve.at([0.0, 1.0])
    assert torch.equal(ends[0], landscape.flat(a)) and torch.equal(ends[1], landscape.flat(b))
    before_a = landscape.flat(a)
    middle_before = landscape.losses_at(a, curve.at(0.5), train)[0].item()
    nblib.fit(curve, train.subset(600, 0), epochs=2, lr=0.05, batch_size=32, progress=False)
    assert [name for name, _ in curve.named_parameters()] == ["bend"]
    assert torch.equal(landscape.flat(a), before_a)
    assert landscape.losses_at(a, curve.at(0.5), train)[0].item() < middle_before


def test_fit_records_snapshots_and_gradient_norms(smoke, digits_pair):
    start, _, _, train, _ = digits_pair
    model = copy.deepcopy(start)
    h = nblib.fit(model, train, epochs=2, lr=0.1, batch_size=100, record_grad_norm=True,
                  watch=lambda m: {"theta": landscape.flat(m)}, progress=False)
    assert len(h.extra["theta"]) == 3 and torch.equal(h.extra["theta"][0], landscape.flat(start))
    assert torch.equal(h.extra["theta"][-1], landscape.flat(model))
    assert len(h.extra["grad norm"]) == 2 * 14 and all(g > 0 for g in h.extra["grad norm"])


def test_gradient_norm_objective_finds_critical_points(smoke):
    points = data.sample_function(torch.sin, 64)
    stack = models.MLPStack([nblib.mlp([1, 6, 1]) for _ in range(3)])
    targets = data.TensorSet(points.x, points.y.repeat(1, 3))
    nblib.fit(stack, targets, epochs=200, lr=1e-2, optimizer="adam", batch_size=64,
              objective=nblib.train.StackedMSE(3), schedule="constant", progress=False)
    objective = landscape.StackedGradientNorm(3)
    h = nblib.fit(stack, targets, epochs=200, lr=1e-3, optimizer="adam", batch_size=64, objective=objective,
                  schedule="constant", progress=False)
    assert h.train_loss[-1] < h.train_loss[0] / 5
    for i, net in enumerate(stack.unstack()):  # the reported norm is the copy's own full-batch gradient norm
        net.zero_grad()
        torch.nn.functional.mse_loss(net(points.x), points.y).backward()
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in net.parameters())).item()
        assert norm == pytest.approx(h.extra[f"grad norm {i}"][-1], rel=0.05, abs=1e-5)
