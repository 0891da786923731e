"""nblib.attacks on a small CNN trained on real digits, cross-checked against torchattacks."""

import pytest
import torch
import torchattacks

import nblib
from nblib import attacks


@pytest.fixture(scope="module")
def victim():
    nblib.setup("test_attacks", "smoke", 0, device="cpu")
    train, test = nblib.load("digits")
    model = nblib.cnn([8, 16])
    nblib.fit(model, train, epochs=4, lr=0.05, batch_size=64, progress=False, device="cpu")
    correct = nblib.predict(model, test.x).argmax(1) == test.y
    return model, test.x[correct][:200], test.y[correct][:200]


def test_fgsm_equals_torchattacks(victim):
    model, x, y = victim
    ours = attacks.fgsm(model, x, y, 0.05)
    theirs = torchattacks.FGSM(model, eps=0.05)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_pgd_success_matches_torchattacks(victim):
    model, x, y = victim
    settings = dict(eps=0.03, alpha=0.005, steps=10)
    ours = attacks.pgd(model, x, y, **settings, random_start=False)
    theirs = torchattacks.PGD(model, **settings, random_start=False)(x, y)
    success = attacks.attack_stats(model, x, theirs, y)["success"]
    assert 0.1 < success < 0.95, "the check needs an eps where the attack is neither hopeless nor certain"
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 1.0)])
def test_pgd_stays_in_the_ball_and_in_range(victim, norm, eps):
    model, x, y = victim
    x_adv = attacks.pgd(model, x, y, eps, alpha=eps / 4, steps=10, norm=norm)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    assert x_adv.shape == x.shape


def test_targeted_pgd_reaches_the_target(victim):
    model, x, y = victim
    target = (y + 3) % 10
    x_adv = attacks.pgd(model, x, target, eps=0.3, alpha=0.02, steps=40, targeted=True)
    stats = attacks.attack_stats(model, x, x_adv, target, targeted=True)
    assert stats["success"] >= 0.9


def test_model_mode_and_parameter_gradients_are_left_alone(victim):
    model, x, y = victim
    model.train()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    attacks.pgd(model, x[:8], y[:8], 0.05, 0.01, 3)
    attacks.fgsm(model, x[:8], y[:8], 0.05)
    assert model.training and all((p.grad == 0).all() for p in model.parameters())
    model.eval()


def test_iterations_to_success(victim):
    model, x, y = victim
    x_adv, first = attacks.pgd(model, x, y, 0.05, 0.01, 10, random_start=False, return_iterations=True)
    assert first.shape == y.shape and first.min() >= -1 and first.max() <= 10
    still_correct = nblib.predict(model, x_adv).argmax(1) == y
    assert (first[still_correct.logical_not()] >= 0).all()  # fooled at the end → fooled at some step
    assert (first != 0).all()  # no random start: the clean images are all classified correctly


def test_attack_stats_of_clean_images(victim):
    model, x, y = victim
    stats = attacks.attack_stats(model, x, x, y)
    confidence = torch.softmax(nblib.predict(model, x), 1).amax(1).mean().item()  # the predicted class's
    assert stats == pytest.approx({"success": 0.0, "accuracy": 1.0, "l2": 0.0, "linf": 0.0,
                                   "confidence": confidence})


def test_transfer_matrix(victim):
    model, x, y = victim
    other = nblib.mlp([784, 32, 10])
    nblib.fit(other, nblib.TensorSet(x, y), epochs=3, lr=0.1, progress=False, device="cpu")
    table = attacks.transfer_matrix({"cnn": model, "mlp": other}, lambda m, a, b: attacks.fgsm(m, a, b, 0.1), x, y)
    assert table.shape == (2, 2) and list(table.index) == ["cnn", "mlp"]
    white_box = attacks.attack_stats(model, x, attacks.fgsm(model, x, y, 0.1), y)["success"]
    assert table.loc["cnn", "cnn"] == pytest.approx(white_box)


def test_adversarial_batches(victim):
    model, x, y = victim
    assert attacks.AdversarialBatches(0.1, 0.125, p=0.0)(model, x, y) is x
    perturbed = attacks.AdversarialBatches(0.1, 0.125, p=1.0)(model, x, y)
    assert 0 < (perturbed - x).abs().max() <= 0.1 + 1e-6
    assert "eps=0.1" in repr(attacks.AdversarialBatches(0.1, 0.125))  # stable cache key


def test_adversarial_batches_repr_is_the_cache_key_it_always_was():
    assert repr(attacks.AdversarialBatches(eps=0.05, alpha=0.0625, steps=1, p=0.5)) == \
        "AdversarialBatches(eps=0.05, alpha=0.0625, steps=1, p=0.5)"
    assert repr(attacks.AdversarialBatches(0.05, 0.0625, clip_start=False)).endswith(", clip_start=False)")
    assert repr(attacks.AdversarialBatches(0.05, 0.05, random_start=False)).endswith(", random_start=False)")
    with pytest.raises(TypeError, match="clip_start must be True or False, got 0"):
        attacks.AdversarialBatches(0.05, 0.0625, clip_start=0)


def test_adversarial_batches_without_random_start_are_fgsm(victim):
    model, x, y = victim
    plain = attacks.AdversarialBatches(0.1, 0.1, p=1.0, random_start=False)(model, x, y)
    assert torch.allclose(plain, attacks.fgsm(model, x, y, 0.1), atol=1e-6)


def test_fast_adversarial_training_takes_the_gradient_at_the_unclipped_start(victim):
    """Wong et al. 2020's FGSM-RS step: uniform start in the ball, gradient there (outside
    [0, 1] where it falls), one step of alpha, back into the ball, then into [0, 1]."""
    model, x, y = victim
    eps, alpha = 0.3, 0.375
    torch.manual_seed(0)
    ours = attacks.AdversarialBatches(eps, alpha, p=1.0, clip_start=False)(model, x, y)
    torch.manual_seed(0)
    torch.rand(())  # the draw that decides whether the batch is attacked
    start = torch.empty_like(x).uniform_(-eps, eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x + start), y), start)
    theirs = (x + (start.detach() + alpha * grad.sign()).clamp(-eps, eps)).clamp(0, 1)
    assert (ours - theirs).abs().gt(1e-5).float().mean() < 0.01  # a sign may flip where the gradient is ~0
    # Clipping the start first, as attacks do, puts every black pixel the step raises on the
    # ball's corner, as plain FGSM would; the unclipped start leaves them spread below it.
    torch.manual_seed(0)
    clipped = attacks.AdversarialBatches(eps, alpha, p=1.0)(model, x, y)
    black = x == 0
    raised_clipped, raised_fast = clipped[black][clipped[black] > 0], ours[black][ours[black] > 0]
    assert len(raised_clipped) > 100 and len(raised_fast) > 100
    assert torch.allclose(raised_clipped, torch.full_like(raised_clipped, eps))
    assert (raised_fast < eps - 1e-3).float().mean() > 0.2


@pytest.mark.parametrize("kwargs,message", [
    (dict(eps=-0.1), "eps"), (dict(alpha=0.0), "alpha"), (dict(steps=0), "steps"), (dict(norm="l1"), "norm"),
    (dict(eps=float("nan")), "eps must be a finite number"), (dict(alpha=float("nan")), "alpha"),
    (dict(eps=float("inf")), "eps must be a finite number"), (dict(batch_size=0), "batch_size"),
])
def test_bad_settings(victim, kwargs, message):
    model, x, y = victim
    with pytest.raises(ValueError, match=message):
        attacks.pgd(model, x[:4], y[:4], **{"eps": 0.1, "alpha": 0.01, "steps": 2, **kwargs})


def test_bad_inputs(victim):
    model, x, y = victim
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        attacks.fgsm(model, x[:4] * 255, y[:4], 0.1)
    with pytest.raises(ValueError, match="labels y must have shape"):
        attacks.pgd(model, x[:4], y[:3], 0.1, 0.01, 2)
    with pytest.raises(ValueError, match="class indices"):
        attacks.fgsm(model, x[:4], y[:4] + 10, 0.1)
    with pytest.raises(ValueError, match="eps"):
        attacks.fgsm(model, x[:4], y[:4], -1)


def test_nan_images_and_float_labels_are_refused(victim):
    model, x, y = victim
    bad = x[:4].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        attacks.pgd(model, bad, y[:4], 0.1, 0.01, 2)
    with pytest.raises(TypeError, match="int64"):
        attacks.fgsm(model, x[:4], y[:4].float(), 0.1)
    with pytest.raises(ValueError, match="eps"):
        attacks.AdversarialBatches(-0.1, 0.01)
    with pytest.raises(ValueError, match="p "):
        attacks.AdversarialBatches(0.1, 0.01, p=2.0)


def test_pgd_in_batches_equals_pgd_at_once(victim):
    model, x, y = victim
    settings = dict(eps=0.05, alpha=0.01, steps=5, random_start=False, return_iterations=True)
    whole, first = attacks.pgd(model, x, y, **settings)
    parts, first_parts = attacks.pgd(model, x, y, batch_size=64, **settings)
    assert torch.allclose(whole, parts, atol=1e-6) and torch.equal(first, first_parts)


def test_pgd_checks_labels_once(victim, monkeypatch):
    model, x, y = victim
    calls = []
    real = attacks._check_labels
    monkeypatch.setattr(attacks, "_check_labels", lambda *a: (calls.append(1), real(*a)))
    attacks.pgd(model, x[:8], y[:8], 0.05, 0.01, steps=10)
    assert len(calls) == 1


def test_accuracy_under_an_attack_and_along_eps(victim):
    model, x, y = victim
    settings = dict(alpha=0.01, steps=5, random_start=False)
    pgd_images = attacks.pgd(model, x, y, 0.05, **settings)
    expected = (nblib.predict(model, pgd_images).argmax(1) == y).float().mean().item()
    assert attacks.accuracy_under(model, x, y, attacks.pgd, eps=0.05, **settings) == pytest.approx(expected)
    clean = (nblib.predict(model, x).argmax(1) == y).float().mean().item()
    curve = attacks.accuracy_curve(model, x, y, [0.0, 0.05], **settings)
    assert curve == pytest.approx([clean, expected]) and curve[1] < curve[0]
