"""MNIST-M and nblib.dann."""

import math

import pytest
import torch

import nblib
from nblib import dann, data


@pytest.fixture(scope="module")
def mnist_m():
    return data.load("mnist"), data.load("mnist-m")


def test_mnist_m_shape_range_labels(mnist_m):
    (mnist_train, mnist_test), (train, test) = mnist_m
    assert train.x.shape == (len(mnist_train), 3, 28, 28) and test.x.shape == (len(mnist_test), 3, 28, 28)
    assert train.x.min() >= 0 and train.x.max() <= 1 and train.x.dtype == torch.float32
    assert torch.equal(train.y, mnist_train.y) and torch.equal(test.y, mnist_test.y)


def test_mnist_m_is_a_blend_of_digit_and_photo(mnist_m):
    (mnist_train, _), (train, _) = mnist_m
    digit = mnist_train.x[:50] > 0.9  # stroke pixels
    background = mnist_train.x[:50] < 0.1
    # |photo − 1| on strokes vs |photo − 0| on background: the digit stays visible
    assert (train.x[:50].mean(1, keepdim=True)[digit].mean() - train.x[:50].mean(1, keepdim=True)[background].mean()
            ).abs() > 0.05
    # backgrounds are real photo crops: colourful and different from image to image
    assert train.x[:50][:, :, :4, :4].flatten(1).std(0).mean() > 0.05
    assert (train.x[:, 0] - train.x[:, 1]).abs().mean() > 0.01


def test_mnist_m_is_deterministic(monkeypatch, tmp_path):
    """Built twice from scratch, in two caches, the same images: the build on 3,000 real MNIST
    digits (the code path of the full set, which takes 13 s a build)."""
    from nblib.data import mnist_m
    train, test = data.load("mnist")
    digits = train.subset(2000, 0), test.subset(1000, 0)
    monkeypatch.setattr(mnist_m, "load", lambda name: digits)
    built = []
    for cache in ("one", "two"):
        monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / cache))
        built.append(data.load("mnist-m"))
    (first, first_test), (again, again_test) = built
    assert torch.equal(first.x, again.x) and torch.equal(first_test.x, again_test.x)
    assert torch.equal(first.y, digits[0].y) and len(again_test) == 1000


def test_blend_crops_differ_between_images():
    digits = torch.zeros(8, 1, 28, 28)
    photos = data.photographs()
    assert len(photos) == len(data.PHOTOS) + len(data.GREY_PHOTOS) + 4 and all(p.shape[0] == 3 for p in photos)
    out = data.blend_with_photos(digits, photos, torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten()[:20].tolist()) for o in out}) == 8


def test_gradient_reversal_is_exactly_minus_lambda():
    x = torch.randn(5, 3, requires_grad=True)
    (x * torch.arange(3.0)).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    out = dann.grad_reverse(x, 0.7)
    assert torch.equal(out, x)
    (out * torch.arange(3.0)).sum().backward()
    assert torch.equal(x.grad, -0.7 * plain)


def test_schedules():
    assert dann.lambda_schedule(0.0) == 0.0 and dann.lambda_schedule(1.0) == pytest.approx(1.0, abs=1e-4)
    assert dann.lambda_schedule(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann.lr_schedule(0.0) == 1.0 and dann.lr_schedule(1.0) == pytest.approx(11 ** -0.75)


def test_dann_step_trains_both_heads(mnist_m):
    (mnist_train, _), (train, test) = mnist_m
    nblib.setup("test_dann", "smoke", 0, device="cpu")
    model = dann.DANN()
    objective = dann.DomainAdversarial(train.subset(500))
    h = nblib.fit(model, mnist_train.rgb().subset(500), test.subset(200), epochs=2, lr=0.01,
                  schedule=dann.lr_schedule, batch_size=64, objective=objective, progress=False, device="cpu")
    assert set(h.extra) == {"domain_loss", "domain_acc", "lambda"} and len(h.extra["lambda"]) == 2
    assert 0 < h.extra["lambda"][0] < h.extra["lambda"][1] < 1
    assert all(0 <= a <= 1 for a in h.extra["domain_acc"])
    assert "DomainAdversarial(target=mnist-m/train[500@0]" in repr(objective)
    assert "reverse=False" in repr(dann.DANN(reverse=False))


def test_fixed_lambda_replaces_the_schedule(mnist_m):
    (mnist_train, _), (train, _) = mnist_m
    objective = dann.DomainAdversarial(train.subset(200), lambd=0.3)
    h = nblib.fit(dann.DANN(), mnist_train.rgb().subset(200), epochs=2, lr=0.01, batch_size=64,
                  objective=objective, progress=False, device="cpu")
    assert h.extra["lambda"] == [0.3, 0.3] and "lambd=0.3" in repr(objective)
    assert repr(objective) != repr(dann.DomainAdversarial(train.subset(200)))
    with pytest.raises(ValueError, match="lambd"):
        dann.DomainAdversarial(train, lambd=-1.0)


def test_proxy_a_distance_separates_and_mixes():
    torch.manual_seed(0)
    same = dann.proxy_a_distance(torch.randn(400, 5), torch.randn(400, 5))
    apart = dann.proxy_a_distance(torch.randn(400, 5), torch.randn(400, 5) + 5)
    assert abs(same) < 0.3 and apart > 1.9


def test_pseudo_labels_use_predictions_not_truth(mnist_m):
    _, (train, _) = mnist_m
    model = dann.DANN()
    pseudo, kept = dann.pseudo_label(model, train.subset(100), threshold=0.0)
    assert len(pseudo) == 100 and torch.equal(pseudo.y, nblib.predict(model, train.subset(100).x).argmax(1))
    assert torch.equal(kept, torch.arange(100))
    assert len(dann.pseudo_label(model, train.subset(100), threshold=1.01)[0]) == 0
