"""Generative adversarial networks, trained and then measured by a judge nobody here trained.

DCGAN (Radford et al. 2016) at 28 × 28 × 1, its conditional form (Mirza & Osindero 2014:
a one-hot class joins z in the generator; the discriminator sees it as 10 extra input
planes, or through a projection, Miyato & Koyama 2018), Goodfellow et al. 2014's
alternating training (Algorithm 1, k = 1) with the saturating or the non-saturating
generator loss, and the measures: the Fréchet distance between the judge's features of
real and generated digits (Heusel et al. 2017's FID formula), the judge's class histogram
(mode coverage) and its accuracy on the classes a conditional generator was asked for.

The judge is the CNN of the PyPI package ``digit-recognizer-py`` 0.1.0 (MIT; weights in
the wheel): 99% on the MNIST test set, trained by its authors, not by this book.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TypedDict

import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from . import config
from .cache import train_or_load
from .config import pick_device
from .data import TensorSet
from .train import channels_last, eval_mode, predict, progress_bar

CONDITIONINGS = ("none", "channels", "projection")
GENERATOR_LOSSES = ("non-saturating", "saturating")
INITS = ("dcgan", "default")


def _one_hot(y: torch.Tensor, classes: int) -> torch.Tensor:
    if y.dtype != torch.long:
        raise TypeError(f"class labels must be int64, not {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"class labels must be a vector, got shape {tuple(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"class labels must lie in 0 … {classes - 1}, got {y.min().item()} … {y.max().item()}")
    return F.one_hot(y, classes).float()


def dcgan_init_(module: nn.Module) -> nn.Module:
    """Radford et al. 2016's initialisation, in place: convolution and linear weights from
    N(0, 0.02²) (the paper's words: "all weights"); batch-norm scales from N(1, 0.02²) and
    shifts 0, as the reference implementations do. Returns `module`."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


class Generator(nn.Module):
    """DCGAN generator: z (N × nz), and a class (N,) if `classes` > 0, → N × 1 × 28 × 28
    images in [−1, 1]. Transposed convolutions 1 → 7 → 14 → 28 pixels, widths 4w and 2w,
    batch norm and ReLU between, tanh at the end (Radford et al. 2016, §3)."""

    def __init__(self, nz: int = 100, width: int = 32, classes: int = 0):
        super().__init__()
        if nz < 1 or width < 1 or classes < 0:
            raise ValueError(f"Generator needs nz ≥ 1, width ≥ 1 and classes ≥ 0, got {nz}, {width}, {classes}")
        self.nz, self.width, self.classes = nz, width, classes
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz + classes, 4 * width, 7, 1, 0, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.nz:
            raise ValueError(f"z must be N × {self.nz}, got {tuple(z.shape)}")
        if (y is not None) != (self.classes > 0):
            raise ValueError("a conditional generator needs class labels y, an unconditional one takes none")
        if y is not None:
            z = torch.cat([z, _one_hot(y, self.classes).to(z.device)], dim=1)
        return self.net(z[:, :, None, None])

    def extra_repr(self) -> str:
        return f"nz={self.nz}, width={self.width}, classes={self.classes}"


class Discriminator(nn.Module):
    """DCGAN discriminator: N × 1 × 28 × 28 images (and classes) → N logits of "real".
    Strided convolutions 28 → 14 → 7 pixels, widths w and 2w, LeakyReLU(0.2), batch norm
    after the first (Radford et al. 2016, §3), then a linear read-out of the 7 × 7 map.
    `conditioning`: ``"none"``; ``"channels"``, the class as 10 extra constant input planes
    (the course's cDCGAN); ``"projection"``, the read-out plus ⟨embed(y), features⟩
    (Miyato & Koyama 2018)."""

    def __init__(self, width: int = 32, classes: int = 0, conditioning: str = "none"):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        if (conditioning == "none") != (classes == 0):
            raise ValueError(f"conditioning {conditioning!r} needs classes {'= 0' if conditioning == 'none' else '> 0'}"
                             f", got {classes}")
        if width < 1 or classes < 0:
            raise ValueError(f"Discriminator needs width ≥ 1 and classes ≥ 0, got {width}, {classes}")
        self.width, self.classes, self.conditioning = width, classes, conditioning
        planes = 1 + (classes if conditioning == "channels" else 0)
        self.features = nn.Sequential(
            nn.Conv2d(planes, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten())
        self.read_out = nn.Linear(2 * width * 7 * 7, 1)
        self.embed = nn.Embedding(classes, 2 * width * 7 * 7) if conditioning == "projection" else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"images must be N × 1 × 28 × 28, got {tuple(x.shape)}")
        if (y is not None) != (self.classes > 0):
            raise ValueError("a conditional discriminator needs class labels y, an unconditional one takes none")
        if self.conditioning == "channels":
            planes = _one_hot(y, self.classes).to(x.device)[:, :, None, None].expand(-1, -1, 28, 28)
            x = torch.cat([x, planes], dim=1)
        h = self.features(x)
        logit = self.read_out(h).squeeze(1)
        if self.conditioning == "projection":
            _one_hot(y, self.classes)  # validates y
            logit = logit + (self.embed(y.to(x.device)) * h).sum(1)
        return logit

    def extra_repr(self) -> str:
        return f"width={self.width}, classes={self.classes}, conditioning={self.conditioning!r}"


class GAN(nn.Module):
    """A generator and its discriminator, as one module (so the cache stores both)."""

    def __init__(self, nz: int = 100, width_g: int = 32, width_d: int = 32, classes: int = 0,
                 conditioning: str = "none", init: str = "dcgan"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        d_classes = 0 if conditioning == "none" else classes
        self.generator = Generator(nz, width_g, classes)
        self.discriminator = Discriminator(width_d, d_classes, conditioning)
        self.init = init
        if init == "dcgan":
            dcgan_init_(self)

    @property
    def conditional(self) -> bool:
        return self.generator.classes > 0

    def extra_repr(self) -> str:
        return f"init={self.init!r}"


def latent_path(z_from: torch.Tensor, z_to: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` points on the straight line from `z_from` to `z_to` (each nz), as steps × nz."""
    alphas = torch.linspace(0, 1, steps, device=z_from.device)[:, None]
    return (1 - alphas) * z_from + alphas * z_to


def generate(generator: Generator, z: torch.Tensor, y: torch.Tensor | None = None,
             batch_size: int = 500) -> torch.Tensor:
    """Images in [0, 1] (N × 1 × 28 × 28) for latent codes `z` (and classes `y`), made in
    eval mode on the generator's device (mode restored), returned on `z`'s device."""
    device = next(generator.parameters()).device
    with torch.no_grad(), eval_mode(generator):  # not a decorator: the cache keys on this code
        parts = [generator(z[i:i + batch_size].to(device), None if y is None else y[i:i + batch_size].to(device))
                 for i in range(0, len(z), batch_size)]
    return torch.cat(parts).add_(1).div_(2).to(z.device)


class GANRun(TypedDict):
    """What `train_gan` returns: per step the discriminator's and generator's losses and the
    mean D(x) and D(G(z)) before the step; the probe's images at the snapshot steps; time."""

    loss_d: list[float]
    loss_g: list[float]
    d_real: list[float]
    d_fake: list[float]
    samples: list[torch.Tensor]
    snapshot_steps: list[int]
    seconds: float
    samples_per_s: float


def _check_train_gan(data: TensorSet, gan: GAN, epochs: float, batch_size: int, generator_loss: str,
                     lr_g: float, lr_d: float, betas: tuple[float, float], probe, snapshots: int) -> None:
    if data.x.dim() != 4 or data.x.shape[1:] != (1, 28, 28):
        raise ValueError(f"train_gan needs N × 1 × 28 × 28 images, got {tuple(data.x.shape)}")
    if gan.conditional and data.y.dtype != torch.long:
        raise TypeError(f"a conditional GAN needs int64 class labels in the data set, not {data.y.dtype}")
    if not epochs > 0 or batch_size < 2:
        raise ValueError(f"epochs must be > 0 and batch_size ≥ 2, got {epochs} and {batch_size}")
    if generator_loss not in GENERATOR_LOSSES:
        raise ValueError(f"generator_loss must be one of {GENERATOR_LOSSES}, got {generator_loss!r}")
    if not (lr_g > 0 and lr_d > 0 and all(0 <= b < 1 for b in betas)):
        raise ValueError(f"learning rates must be > 0 and betas in [0, 1), got {lr_g}, {lr_d}, {betas}")
    if probe is not None:
        if snapshots < 1:
            raise ValueError(f"snapshots must be ≥ 1 when a probe is given, got {snapshots}")
        z, y = probe
        with torch.no_grad(), eval_mode(gan.generator):  # raises now, not a quarter into training
            gan.generator(z[:2].to(next(gan.parameters()).device), None if y is None else y[:2])


def train_gan(gan: GAN, data: TensorSet, epochs: float = 1, batch_size: int = 128, lr_g: float = 2e-4,
              lr_d: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
              generator_loss: str = "non-saturating", probe: tuple[torch.Tensor, torch.Tensor | None] | None = None,
              snapshots: int = 4, device=None, desc: str = "GAN", progress: bool = True) -> GANRun:
    """Goodfellow et al. 2014's Algorithm 1 with k = 1, by mini-batch Adam (Radford et al.
    2016: lr 2e-4, β₁ = 0.5). Each step, on a batch of real images x (scaled to [−1, 1])
    and fresh noise z:

    1. the discriminator ascends log D(x) + log(1 − D(G(z)));
    2. on a fresh noise batch, the generator descends log(1 − D(G(z))) (``"saturating"``,
       the minimax game as written) or ascends log D(G(z)) (``"non-saturating"``, the
       paper's practical choice: strong gradients while D rejects the fakes).

    A conditional GAN draws the classes of its fakes uniformly. `epochs` may be
    fractional (a part of one pass). Returns a plain dict: per step ``loss_d``,
    ``loss_g``, ``d_real`` and ``d_fake`` (mean D(x) and D(G(z)) before the step), and
    ``samples``: images of the generator for the fixed latent codes `probe` (z, y), as
    uint8 tensors at `snapshots` evenly spaced steps (the last one at the end), with the
    ``snapshot_steps``. Trains `gan` in place; leaves it in eval mode on `device`.
    """
    _check_train_gan(data, gan, epochs, batch_size, generator_loss, lr_g, lr_d, betas, probe, snapshots)
    device = torch.device(device) if device else pick_device()
    gan.to(device)
    generator, discriminator = gan.generator, gan.discriminator
    x_all = data.x.to(device).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    y_all = data.y.to(device)
    n = len(x_all)
    total_steps = max(1, round(epochs * n / batch_size))
    snapshot_at = sorted({round(total_steps * (i + 1) / snapshots) for i in range(snapshots)})
    fused = device.type in ("cpu", "cuda")  # one kernel per step, not one per tensor
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas, fused=fused)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas, fused=fused)
    classes = generator.classes
    logs = {k: [] for k in ("loss_d", "loss_g", "d_real", "d_fake")}
    samples, order, position = [], torch.randperm(n, device=device), 0
    start = time.perf_counter()

    def noise(m: int):
        """A fresh batch of latent codes (and, for a conditional G, of uniform classes)."""
        z = torch.randn(m, generator.nz, device=device)
        return z, (torch.randint(0, classes, (m,), device=device) if gan.conditional else None)

    def seen(y_fake):  # "y removed from D": G still gets the class, D does not
        return y_fake if discriminator.classes else None

    gan.train()
    try:
        with channels_last(gan), progress_bar(total_steps, desc, progress) as bar:
            for step in range(1, total_steps + 1):
                if position + batch_size > n:  # a new epoch: reshuffle
                    order, position = torch.randperm(n, device=device), 0
                batch = order[position:position + batch_size]
                position += batch_size
                x, y = x_all[batch], (y_all[batch] if discriminator.classes else None)

                z, y_fake = noise(len(batch))
                with torch.no_grad():
                    fake = generator(z, y_fake)
                d_real, d_fake = discriminator(x, y), discriminator(fake, seen(y_fake))
                loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                          + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()

                z, y_fake = noise(len(batch))
                discriminator.requires_grad_(False)  # the G step needs no gradient for D's weights
                d_on_g = discriminator(generator(z, y_fake), seen(y_fake))
                if generator_loss == "non-saturating":  # −log D(G(z))
                    loss_g = F.binary_cross_entropy_with_logits(d_on_g, torch.ones_like(d_on_g))
                else:  # log(1 − D(G(z)))
                    loss_g = -F.binary_cross_entropy_with_logits(d_on_g, torch.zeros_like(d_on_g))
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                discriminator.requires_grad_(True)

                for k, v in (("loss_d", loss_d), ("loss_g", loss_g), ("d_real", torch.sigmoid(d_real).mean()),
                             ("d_fake", torch.sigmoid(d_fake).mean())):
                    logs[k].append(v.detach())
                if probe is not None and step in snapshot_at:
                    samples.append(generate(generator, *probe).mul(255).round().to(torch.uint8).cpu())
                bar.update()
    finally:
        discriminator.requires_grad_(True)  # also after an error in the G step
        gan.eval()
    logs = {k: torch.stack(v).tolist() for k, v in logs.items()}
    if not all(math.isfinite(v) for v in logs["loss_d"]):
        raise FloatingPointError("the discriminator's loss became NaN or infinite: lower the learning rates")
    seconds = time.perf_counter() - start
    return {**logs, "samples": samples, "snapshot_steps": snapshot_at if probe is not None else [],
            "seconds": seconds, "samples_per_s": total_steps * batch_size / seconds}


def train_gan_cached(name: str, gan: GAN, data: TensorSet, **train_kwargs) -> GANRun:
    """`train_gan` through the cache (as `nblib.fit_cached` is `fit`): the second call with
    the same starting weights, data and settings loads the weights and the run's logs."""
    run = config.current()
    return train_or_load(name, gan, lambda m: train_gan(m, data, desc=name, **train_kwargs),
                         device=train_kwargs.get("device"), train=data.id, trainer=train_gan,
                         recipe={k: v for k, v in train_kwargs.items() if k != "progress"},
                         profile=run.profile, seed=run.seed)


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the judge's training normalisation


def _judge_input(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"the judge takes N × 1 × 28 × 28 images, got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 255
    if not torch.isfinite(images).all():
        raise ValueError("the judge got images with NaN or infinite pixels: the generator diverged")
    if images.min() < -1e-3 or images.max() > 1 + 1e-3:
        raise ValueError("the judge takes images in [0, 1] (use generate(), which rescales G's [−1, 1])")
    return (images - MNIST_MEAN) / MNIST_STD


def judge_features(judge: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The judge's penultimate features (N × 256, after its last ReLU) of images in [0, 1]."""
    head = judge.fc_layers[:-1]
    return predict(judge, _judge_input(images), forward=lambda x: head(judge.conv_layers(x).flatten(1)))


def _judge_logits(judge: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # the package's forward flattens with .view, which channels-last inputs do not allow
    return judge.fc_layers(judge.conv_layers(x).flatten(1))


def judge_predict(judge: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The judge's class for each image in [0, 1] (N,)."""
    return predict(judge, _judge_input(images), forward=lambda x: _judge_logits(judge, x)).argmax(1)


def confident_reading(judge: nn.Module, images: torch.Tensor, confidence: float = 0.9,
                      classes: int = 10) -> dict:
    """What the judge makes of `images` (N × 1 × 28 × 28, in [0, 1]) when only its confident
    readings count. Returns ``read``, the share of images whose most likely class has
    softmax probability ≥ `confidence` (uniform noise: about 0.1%), and ``shares``, each
    class's share among those images (`classes` zeros when there are none): a histogram
    that noise, which the judge reads as a 1 or a 4 at low confidence, does not fill."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    probabilities = predict(judge, _judge_input(images), forward=lambda x: _judge_logits(judge, x)).softmax(1)
    top, label = probabilities.max(1)
    sure = label[top >= confidence]
    counts = torch.bincount(sure.cpu(), minlength=classes).double()
    shares = counts / counts.sum() if len(sure) else counts
    return {"read": len(sure) / len(images), "shares": shares.tolist()}


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) between Gaussians fitted to two sets of
    feature vectors (rows), as FID (Heusel et al. 2017) computes it, in float64."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"need two N × d feature sets of the same d, got {tuple(features_a.shape)} and "
                         f"{tuple(features_b.shape)}")
    if min(len(features_a), len(features_b)) < 2:
        raise ValueError("each feature set needs at least 2 rows for a covariance")
    a, b = features_a.double().cpu().numpy(), features_b.double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(torch.from_numpy(a).T).numpy(), torch.cov(torch.from_numpy(b).T).numpy()
    with warnings.catch_warnings():  # ReLU features that never fire make Σ singular; the root is still fine
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not math.isfinite(float(abs(root).sum())):  # regularise, as FID's reference code does
            eps = 1e-6 * torch.eye(len(cov_a), dtype=torch.float64).numpy()
            root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * root.trace())


def mode_coverage(labels: torch.Tensor, classes: int = 10, share: float = 0.05) -> dict:
    """How a sample's (judged) classes spread: the share of each class, the entropy of
    that histogram in nats (log 10 ≈ 2.30 when uniform) and how many classes hold at
    least `share` of the sample."""
    if labels.dtype != torch.long:
        raise TypeError(f"labels must be int64 class indices, not {labels.dtype}")
    if labels.dim() != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty vector, got shape {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes - 1}], got {labels.min().item()} to {labels.max().item()}")
    counts = torch.bincount(labels.cpu(), minlength=classes).double()
    shares = counts / counts.sum()
    entropy = -(shares[shares > 0] * shares[shares > 0].log()).sum().item()
    return {"shares": shares.tolist(), "entropy": entropy, "classes_covered": int((shares >= share).sum())}
