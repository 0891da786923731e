"""nblib.gan: shapes and errors of G and D, the training loop, and the judge's measures on real
MNIST digits, the Fréchet distance cross-checked against torchmetrics' FID."""

import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

import nblib
from nblib import gan, pretrained


@pytest.fixture(scope="module")
def mnist():
    return nblib.load("mnist")


@pytest.fixture(scope="module")
def judge():
    return pretrained.mnist_judge("cpu")


def test_judge_loads_offline_and_reads_real_digits(judge, mnist):
    _, test = mnist
    digits = test.subset(2000, seed=0)
    accuracy = (gan.judge_predict(judge, digits.x) == digits.y).float().mean().item()
    assert accuracy >= 0.98
    assert gan.judge_features(judge, digits.x[:10]).shape == (10, 256)


def test_judge_rejects_images_outside_unit_range(judge, mnist):
    _, test = mnist
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gan.judge_predict(judge, test.x[:4] * 2 - 1)
    with pytest.raises(ValueError, match="28 × 28"):
        gan.judge_features(judge, torch.zeros(2, 3, 28, 28))


class _JudgeFeatures(nn.Module):
    """The judge's features as a torchmetrics FID feature extractor."""

    num_features = 256

    def __init__(self, judge):
        super().__init__()
        self.judge = judge

    def forward(self, images):
        return gan.judge_features(self.judge, images).double()


def test_frechet_distance_matches_torchmetrics_and_orders_real_and_noise(judge, mnist):
    _, test = mnist
    digits = test.subset(2000, seed=1).x
    real_a, real_b = gan.judge_features(judge, digits[:1000]), gan.judge_features(judge, digits[1000:])
    noise = gan.judge_features(judge, torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert gan.frechet_distance(real_a, real_a) == pytest.approx(0, abs=1e-6)
    halves, versus_noise = gan.frechet_distance(real_a, real_b), gan.frechet_distance(real_a, noise)
    assert versus_noise > 20 * halves
    peer = FrechetInceptionDistance(feature=_JudgeFeatures(judge), normalize=True)
    peer.update(digits[:1000], real=True)
    peer.update(digits[1000:], real=False)
    assert halves == pytest.approx(peer.compute().item(), rel=1e-3)


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="same d"):
        gan.frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="2 rows"):
        gan.frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


def test_mode_coverage_counts_classes():
    labels = torch.tensor([0] * 50 + [1] * 46 + [2] * 4)
    coverage = gan.mode_coverage(labels)
    assert coverage["classes_covered"] == 2  # class 2 holds 4% < 5%
    assert coverage["shares"][:3] == pytest.approx([0.5, 0.46, 0.04])
    uniform = gan.mode_coverage(torch.arange(10).repeat(10))
    assert uniform["entropy"] == pytest.approx(torch.log(torch.tensor(10.0)).item())
    assert uniform["classes_covered"] == 10


@pytest.mark.parametrize("conditioning", gan.CONDITIONINGS)
def test_shapes_with_and_without_conditioning(conditioning):
    classes = 0 if conditioning == "none" else 10
    model = gan.GAN(nz=8, width_g=4, width_d=4, classes=classes, conditioning=conditioning)
    z, y = torch.randn(5, 8), (torch.arange(5) if classes else None)
    images = model.generator(z, y)
    assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1
    assert model.discriminator(images, y).shape == (5,)
    made = gan.generate(model.generator, z, y)
    assert made.shape == (5, 1, 28, 28) and made.min() >= 0 and made.max() <= 1
    assert model.generator.training  # generate restores the mode


def test_bad_latent_codes_and_labels_raise():
    conditional = gan.Generator(nz=8, width=4, classes=10)
    with pytest.raises(ValueError, match="N × 8"):
        conditional(torch.randn(3, 7), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="needs class labels"):
        conditional(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"0 … 9"):
        conditional(torch.randn(3, 8), torch.tensor([0, 3, 10]))
    with pytest.raises(TypeError, match="class labels must be int64, not torch.float32"):
        conditional(torch.randn(3, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="takes none"):
        gan.Generator(nz=8, width=4)(torch.randn(3, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="conditioning"):
        gan.Discriminator(4, classes=10, conditioning="concat")
    with pytest.raises(ValueError, match="needs classes"):
        gan.Discriminator(4, classes=0, conditioning="projection")
    with pytest.raises(ValueError, match="init"):
        gan.GAN(init="xavier")


def test_train_gan_logs_each_step_and_snapshots_the_probe(mnist):
    train, _ = mnist
    digits = train.subset(256, seed=0)
    model = gan.GAN(nz=8, width_g=4, width_d=4, classes=10, conditioning="projection")
    probe = (torch.randn(6, 8), torch.arange(6))
    run = gan.train_gan(model, digits, epochs=1.5, batch_size=64, probe=probe, snapshots=3, device="cpu",
                        progress=False)
    assert len(run["loss_d"]) == len(run["d_fake"]) == 6  # 1.5 × 256 / 64
    assert run["snapshot_steps"] == [2, 4, 6]
    assert [s.shape for s in run["samples"]] == [(6, 1, 28, 28)] * 3 and run["samples"][0].dtype == torch.uint8
    assert all(0 <= d <= 1 for d in run["d_real"]) and not model.training


def test_train_gan_with_y_removed_from_the_discriminator(mnist):
    train, _ = mnist
    model = gan.GAN(nz=8, width_g=4, width_d=4, classes=10, conditioning="none")
    assert model.conditional and model.discriminator.classes == 0
    run = gan.train_gan(model, train.subset(128, seed=0), epochs=1, batch_size=64, device="cpu", progress=False)
    assert len(run["loss_g"]) == 2 and run["samples"] == []


def test_train_gan_rejects_bad_arguments(mnist):
    train, _ = mnist
    digits = train.subset(64, seed=0)
    model = gan.GAN(nz=8, width_g=4, width_d=4)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="generator_loss"):
        gan.train_gan(model, digits, generator_loss="wasserstein")
    with pytest.raises(ValueError, match="epochs"):
        gan.train_gan(model, digits, epochs=0)
    with pytest.raises(ValueError, match="betas"):
        gan.train_gan(model, digits, betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="28 × 28"):
        gan.train_gan(model, nblib.load("digits")[0].rgb())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_train_gan_cached_loads_the_second_time(mnist, smoke, monkeypatch):
    train, _ = mnist
    digits = train.subset(128, seed=0)

    def fresh():
        torch.manual_seed(0)
        return gan.GAN(nz=8, width_g=4, width_d=4)

    first_model = fresh()
    first = gan.train_gan_cached("test-gan", first_model, digits, epochs=1, batch_size=64, device="cpu",
                                 progress=False)
    monkeypatch.setattr(nblib.cache, "save", lambda *a, **k: pytest.fail("trained again instead of loading"))
    second_model = fresh()
    second = gan.train_gan_cached("test-gan", second_model, digits, epochs=1, batch_size=64, device="cpu",
                                  progress=False)
    assert second["loss_d"] == first["loss_d"]
    assert all(torch.equal(a, b) for a, b in zip(first_model.state_dict().values(),
                                                  second_model.state_dict().values(), strict=True))


def test_generator_losses_have_the_papers_signs(mnist):
    train, _ = mnist
    digits = train.subset(128, seed=0)
    for loss, sign in (("non-saturating", 1), ("saturating", -1)):
        torch.manual_seed(0)
        run = gan.train_gan(gan.GAN(nz=8, width_g=4, width_d=4), digits, epochs=1, batch_size=64,
                            generator_loss=loss, device="cpu", progress=False)
        # −log D(G(z)) is positive; log(1 − D(G(z))) is negative
        assert all(sign * v > 0 for v in run["loss_g"])


def test_projection_discriminator_reads_the_class():
    torch.manual_seed(0)
    d = gan.Discriminator(4, classes=10, conditioning="projection").eval()
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    assert not torch.allclose(d(images, torch.zeros(3, dtype=torch.long)), d(images, torch.ones(3, dtype=torch.long)))


def test_dcgan_init_draws_small_weights():
    torch.manual_seed(0)
    model = gan.GAN(width_g=32, width_d=32)
    conv = model.generator.net[3].weight
    assert conv.std().item() == pytest.approx(0.02, rel=0.05) and abs(conv.mean().item()) < 0.002
    assert model.discriminator.features[0].weight.std().item() == pytest.approx(0.02, rel=0.2)
    default = gan.GAN(width_g=32, width_d=32, init="default").discriminator.features[0].weight
    assert default.std().item() > 0.1  # PyTorch's Kaiming-uniform bound 1/√16 for a 4×4 kernel on 1 plane


def test_bad_probe_raises_before_training(mnist):
    train, _ = mnist
    conditional = gan.GAN(nz=8, width_g=4, width_d=4, classes=10, conditioning="projection")
    with pytest.raises(ValueError, match="needs class labels"):
        gan.train_gan(conditional, train.subset(64, seed=0), probe=(torch.randn(4, 8), None), progress=False)
    with pytest.raises(ValueError, match="snapshots"):
        gan.train_gan(conditional, train.subset(64, seed=0), probe=(torch.randn(4, 8), torch.arange(4)),
                      snapshots=0, progress=False)


def test_confident_reading_counts_real_digits_not_noise(judge, mnist):
    _, test = mnist
    real = gan.confident_reading(judge, test.x[:500])
    noise = gan.confident_reading(judge, torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert real["read"] > 0.9 and noise["read"] < 0.05
    assert sum(real["shares"]) == pytest.approx(1) and min(real["shares"]) > 0.03
    blank = gan.confident_reading(judge, torch.full((4, 1, 28, 28), 0.5), confidence=0.999999)
    assert len(blank["shares"]) == 10
    with pytest.raises(ValueError):
        gan.confident_reading(judge, test.x[:4], confidence=1.5)
