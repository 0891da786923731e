"""nblib.saliency on a small CNN trained on real digits, cross-checked against captum."""

import numpy as np
import pytest
import skimage.filters
import torch
from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency

import nblib
from nblib import saliency


@pytest.fixture(scope="module")
def digit_cnn():
    """A small CNN trained briefly on scikit-learn's real digits (28 × 28), and test digits."""
    nblib.setup("test_chapter", "smoke", 0, device="cpu")
    train, test = nblib.load("digits")
    torch.manual_seed(0)
    model = nblib.models.cnn([8, 16], bn=False)
    nblib.fit(model, train, epochs=3, lr=0.05, batch_size=64, progress=False)
    x, y = test.x[:16], test.y[:16]
    return model, x, y


@pytest.fixture(scope="module")
def trained_digit_cnn():
    """A CNN with batch norm trained on the real digits to well above chance (~59% test)."""
    nblib.setup("test_chapter", "smoke", 0, device="cpu")
    train, test = nblib.load("digits")
    torch.manual_seed(0)
    model = nblib.models.cnn([8, 16])
    history = nblib.fit(model, train, test, epochs=6, lr=0.05, batch_size=64, progress=False)
    assert history.test_acc[-1] > 0.4
    return model, test.x[:16]


def test_gradient_matches_captum_saliency(digit_cnn):
    model, x, y = digit_cnn
    ours = saliency.gradient(model, x, y)
    theirs = Saliency(model).attribute(x.clone().requires_grad_(True), target=y)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs)
    signed = saliency.gradient(model, x, y, absolute=False)
    torch.testing.assert_close(signed.abs(), ours)


def test_integrated_gradients_match_captum_and_are_complete(digit_cnn):
    model, x, y = digit_cnn
    ours = saliency.integrated_gradients(model, x, y, steps=64)
    theirs = IntegratedGradients(model).attribute(x, target=y, n_steps=65, method="riemann_trapezoid")
    # captum 0.9's trapezoid weighs its 65 points by 1/65 (halved at the ends), so its weights
    # sum to 64/65; the trapezoid rule on 64 intervals weighs them by 1/64
    torch.testing.assert_close(ours, theirs * 65 / 64, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())
    gap = saliency.completeness_gap(model, x, y, ours)
    scores = nblib.predict(model, x).gather(1, y[:, None]).squeeze(1)
    assert gap.abs().max() < 0.02 * scores.abs().max()


def test_smoothgrad_agrees_with_captum_noise_tunnel(digit_cnn):
    model, x, y = digit_cnn
    x = x[:4]
    y = y[:4]
    ours = saliency.smoothgrad(model, x, y, samples=400, noise_level=0.15,
                               generator=torch.Generator().manual_seed(0))
    span = (x.flatten(1).max(1).values - x.flatten(1).min(1).values)
    torch.manual_seed(1)
    theirs = torch.cat([
        NoiseTunnel(Saliency(model)).attribute(x[i:i + 1], nt_type="smoothgrad", nt_samples=400,
                                               stdevs=0.15 * span[i].item(), target=y[i:i + 1], abs=False)
        for i in range(len(x))])
    assert ours.shape == x.shape
    for a, b in zip(ours, theirs, strict=True):  # two independent Monte-Carlo estimates of one mean
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9


def test_grad_cam_matches_captum_layer_grad_cam(digit_cnn):
    model, x, y = digit_cnn
    layer = model[-4]  # the last ReLU, before global pooling: 7 × 7
    ours = saliency.grad_cam(model, x, y, layer, upsample=False)
    theirs = LayerGradCam(model, layer).attribute(x, target=y, relu_attributions=True)
    assert ours.shape == (len(x), 1, 7, 7)
    torch.testing.assert_close(ours, theirs)
    assert saliency.grad_cam(model, x, y, layer).shape == (len(x), 1, 28, 28)


def test_deletion_falls_faster_for_integrated_gradients_than_for_random_order(digit_cnn):
    model, x, y = digit_cnn
    attributions = saliency.integrated_gradients(model, x, y)
    fractions, curve = saliency.deletion_curve(model, x, y, attributions)
    assert curve.shape == (len(x), len(fractions))
    random_order = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    _, random_curve = saliency.deletion_curve(model, x, y, random_order)
    assert saliency.auc(fractions, curve).mean() < saliency.auc(fractions, random_curve).mean()
    fractions, rising = saliency.insertion_curve(model, x, y, attributions)
    torch.testing.assert_close(rising[:, -1], torch.softmax(nblib.predict(model, x), 1).gather(1, y[:, None])[:, 0])


def test_randomised_copy_resets_top_layers_only(digit_cnn):
    model, _, _ = digit_cnn
    layers = saliency.parametrised_layers(model)
    copy_ = saliency.randomised_copy(model, top=1, generator=torch.Generator().manual_seed(0))
    new_layers = saliency.parametrised_layers(copy_)
    assert not torch.equal(new_layers[-1].weight, layers[-1].weight)
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(new_layers[:-1], layers[:-1], strict=True))
    with pytest.raises(ValueError, match="top must lie"):
        saliency.randomised_copy(model, top=len(layers) + 1)
    # cumulative: the top layer drawn for top = 2 is the one drawn for top = 1
    two = saliency.randomised_copy(model, top=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(saliency.parametrised_layers(two)[-1].weight, new_layers[-1].weight)
    state = torch.get_rng_state()
    saliency.randomised_copy(model, top=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_methods_restore_mode_and_reject_bad_inputs(digit_cnn):
    model, x, y = digit_cnn
    model.train()
    saliency.gradient(model, x[:2], y[:2])
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="N × C × H × W"):
        saliency.gradient(model, x[0], y[:1])
    with pytest.raises(ValueError, match="class indices"):
        saliency.gradient(model, x[:2], y[:3])
    with pytest.raises(TypeError, match="target must be int64 class indices, not torch.float32"):
        saliency.gradient(model, x[:2], y[:2].float())
    with pytest.raises(ValueError, match="target classes"):
        saliency.gradient(model, x[:2], torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="inside model"):
        saliency.grad_cam(model, x[:2], y[:2], torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="spatial extent"):  # the global pooling's 1 × 1 map
        saliency.grad_cam(model, x[:2], y[:2], model[-3])
    with pytest.raises(ValueError, match="NaN"):
        saliency.integrated_gradients(model, x[:2] * float("nan"), y[:2])


def test_edges_match_scikit_image_sobel(digit_cnn):
    _, x, _ = digit_cnn
    colour = x.expand(-1, 3, -1, -1)  # its channel mean is the digit itself
    ours = saliency.edges(colour)
    assert ours.shape == (len(x), 1, *x.shape[2:])
    theirs = torch.from_numpy(np.stack([skimage.filters.sobel(image[0].double().numpy()) for image in x]))
    torch.testing.assert_close(ours[:, 0].double(), theirs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="N × C × H × W"):
        saliency.edges(x[0])


def test_rank_correlation_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, 5, 5, generator=generator)
    b = a + 0.3 * torch.rand(3, 1, 5, 5, generator=generator)
    a[:, :, :2] = 0  # ties, as in maps that are zero on a black background
    ours = saliency.rank_correlation(a, b)
    for i in range(3):
        assert ours[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten()).statistic, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        saliency.rank_correlation(a, b[:2])
    assert saliency.rank_correlation(torch.zeros(1, 4), torch.rand(1, 4)).isnan().all()


def test_class_model_raises_the_class_probability_and_batches_a_sweep(trained_digit_cnn):
    model, x = trained_digit_cnn
    target = torch.tensor([3, 3, 7])
    start = (0.5 + 0.1 * torch.randn(3, *x.shape[1:], generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    settings = dict(lr=0.02, decay=[1e-3, 0.0, 1e-3], blur_every=[2, 0, 5])
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.train()
    images = saliency.class_model(model, target, start, steps=30, record=[10], **settings)
    assert model.training  # mode restored
    assert sorted(images) == [10, 30] and images[30].shape == start.shape
    assert images[30].min() >= 0 and images[30].max() <= 1
    before = torch.softmax(nblib.predict(model, start), 1).gather(1, target[:, None])
    after = torch.softmax(nblib.predict(model, images[30]), 1).gather(1, target[:, None])
    assert (after > before + 0.4).all()
    # one batch of settings gives what separate runs give: images never interact
    alone = saliency.class_model(model, target[1:2], start[1:2], steps=30, lr=0.02, decay=0.0, blur_every=0)
    torch.testing.assert_close(alone[30], images[30][1:2], rtol=1e-4, atol=1e-5)
    for before_grad, p in zip(grads, model.parameters(), strict=True):  # left untouched
        assert (before_grad is None and p.grad is None) or torch.equal(before_grad, p.grad)


def test_class_model_rejects_bad_settings(trained_digit_cnn):
    model, x = trained_digit_cnn
    start, target = x[:2].clamp(0, 1), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="one per image"):
        saliency.class_model(model, target, start, steps=2, lr=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="decay"):
        saliency.class_model(model, target, start, steps=2, decay=1.0)
    with pytest.raises(ValueError, match="record"):
        saliency.class_model(model, target, start, steps=2, record=[5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        saliency.class_model(model, target, start * 3, steps=2)
    with pytest.raises(ValueError, match="lr"):
        saliency.class_model(model, target, start, steps=2, lr=float("nan"))
    with pytest.raises(ValueError, match="whole numbers"):
        saliency.class_model(model, target, start, steps=2, blur_every=2.5)
    for bad in (dict(steps=0), dict(jitter=-1), dict(blur_sigma=0.0)):
        with pytest.raises(ValueError, match="need steps"):
            saliency.class_model(model, target, start, **({"steps": 2} | bad))


def test_class_model_step_follows_its_formula(trained_digit_cnn):
    model, x = trained_digit_cnn
    start, target = x[:2].clamp(0, 1), torch.tensor([4, 5])
    lr, decay = 0.03, 0.01
    g = saliency.gradient(model, start, target, absolute=False)
    g = g / g.abs().mean((1, 2, 3), keepdim=True)
    expected = (0.5 + (1 - decay) * (start + lr * g - 0.5)).clamp(0, 1)
    one = saliency.class_model(model, target, start, steps=1, lr=lr, decay=decay)[1]
    torch.testing.assert_close(one, expected)
    blurred = saliency.class_model(model, target, start, steps=1, lr=lr, decay=decay, blur_every=1)[1]
    torch.testing.assert_close(blurred, saliency.blur(expected, 0.5))
