"""Saliency: which input pixels a classifier's score for one class depends on, and whether a
map can be trusted.

Each method reads like its paper. Conventions follow captum: inputs N × C × H × W, one
target class per image, attributions with the input's shape, on the input's device (the
work runs on the model's device); Grad-CAM's map is N × 1 × H × W, upsampled from its
layer. A method puts the model in eval mode and restores its mode afterwards; gradients
come from `torch.autograd.grad`, so parameters' ``.grad`` fields are left untouched.

- `gradient`: ∂S_c/∂x (Simonyan et al. 2014), by default its absolute value, the max over
  channels taken by the caller when a single map is wanted.
- `smoothgrad`: the gradient averaged over noisy copies x + N(0, σ²) (Smilkov et al. 2017).
- `integrated_gradients`: (x − x′) ⊙ ∫₀¹ ∇S_c(x′ + α(x − x′)) dα by the trapezoid rule
  (Sundararajan et al. 2017), whose sum over pixels should equal S_c(x) − S_c(x′)
  (completeness): `completeness_gap` measures it.
- `grad_cam`: ReLU(Σ_k α_k A_k), α_k the spatial mean of ∂S_c/∂A_k at a named layer
  (Selvaraju et al. 2017), bilinearly upsampled to the input's size.
- `deletion_curve`/`insertion_curve`: the class probability as the most salient pixels
  are removed from the image, or added to a blank one (Petsiuk et al. 2018), and their AUC.
- `randomised_copy`: the model with its top k parametrised layers re-initialised (Adebayo
  et al. 2018's cascading randomisation), for sanity checks.
- `class_model`: an image that maximises S_c by gradient ascent (Simonyan et al. 2014),
  with Yosinski et al. 2015's regularisers (L2 decay, blur every k steps) and jitter.
- `edges`: the Sobel edge strength of the image, the network-free map Adebayo et al. compare with.
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .train import eval_mode, to_model_device


def _finite(images: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return images


def _check(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated inputs, moved to the model's device."""
    if x.dim() != 4:
        raise ValueError(f"inputs must be N × C × H × W images, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("inputs contain NaN or infinite values")
    if target.dtype != torch.long:
        raise TypeError(f"target must be int64 class indices, not {target.dtype}")
    if target.shape != (len(x),):
        raise ValueError(f"target must be {len(x)} class indices, got shape {tuple(target.shape)}")
    return tuple(to_model_device(model, x, target))


def _class_scores(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    if target.numel() and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise ValueError(f"target classes must lie in [0, {logits.shape[1] - 1}], "
                         f"got {target.min().item()} … {target.max().item()}")
    return logits.gather(1, target[:, None]).squeeze(1)


def _input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(_class_scores(model, x, target).sum(), x)[0]


def gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Simonyan et al. 2014's saliency: the gradient of the target class's score (logit)
    with respect to the input, |∂S_c/∂x| by default (captum's ``Saliency``).

    Args: `x` N × C × H × W images; `target` int64 classes (N,); ``absolute=False`` keeps the sign.
    Returns: attributions of x's shape, on x's device.
    Example: ``single_map = gradient(net, x, y).amax(1, keepdim=True)``."""
    xd, td = _check(model, x, target)
    with eval_mode(model):
        grad = _input_gradient(model, xd, td)
    return (grad.abs() if absolute else grad).to(x.device)


def smoothgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor, samples: int = 50,
               noise_level: float = 0.15, absolute: bool = False, batch_size: int = 256,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Smilkov et al. 2017: the mean gradient over `samples` copies of each image with
    Gaussian noise of σ = `noise_level` × (max − min of that image) added (their 10–20%
    recommended).

    Args: `x` N × C × H × W images; `target` int64 classes (N,); `samples` ≥ 1; `noise_level` ≥ 0;
    ``absolute=True`` averages |gradient| instead (the absolute-value maps the paper displays);
    `batch_size` noisy copies per pass; `generator` (a CPU one) draws the noise.
    Returns: attributions of x's shape (N × C × H × W), on x's device."""
    if samples < 1 or not noise_level >= 0:
        raise ValueError(f"samples must be ≥ 1 and noise_level ≥ 0, got {samples} and {noise_level}")
    xd, td = _check(model, x, target)
    span = (xd.flatten(1).max(1).values - xd.flatten(1).min(1).values).view(-1, 1, 1, 1)
    noise = torch.randn((samples, *xd.shape), generator=generator).to(xd.device) * noise_level * span
    noisy = (xd + noise).flatten(0, 1)  # samples × N images, sample-major
    targets = td.repeat(samples)
    with eval_mode(model):
        grads = torch.cat([_input_gradient(model, noisy[i:i + batch_size], targets[i:i + batch_size])
                           for i in range(0, len(noisy), batch_size)])
    grads = grads.view(samples, *xd.shape)
    return (grads.abs() if absolute else grads).mean(0).to(x.device)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                         baseline: torch.Tensor | None = None, steps: int = 50,
                         batch_size: int = 256) -> torch.Tensor:
    """Sundararajan et al. 2017: (x − x′) times the path integral of the gradient along the
    straight line from the baseline x′ (default: black, zeros) to x, by the trapezoid rule
    on `steps` intervals (captum's ``method="riemann_trapezoid"`` with steps + 1 points
    weighs them by 1/(steps + 1), so its result is ours times steps/(steps + 1)).

    Args: `x` N × C × H × W images; `target` int64 classes (N,); `baseline` x′, finite, broadcastable
    to x's shape (e.g. C × H × W); `steps` ≥ 1; `batch_size` path images per pass.
    Returns: attributions of x's shape, on x's device.
    Example: ``ig = integrated_gradients(net, x, y, steps=64); completeness_gap(net, x, y, ig)``."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    xd, td = _check(model, x, target)
    base = torch.zeros_like(xd) if baseline is None else _finite(baseline, "baseline").to(xd.device).expand_as(xd)
    alphas = torch.linspace(0, 1, steps + 1, device=xd.device)
    weights = torch.full_like(alphas, 1 / steps)
    weights[0] = weights[-1] = 0.5 / steps
    path = (base + alphas.view(-1, 1, 1, 1, 1) * (xd - base)).flatten(0, 1)  # (steps+1)·N images
    targets = td.repeat(steps + 1)
    with eval_mode(model):
        grads = torch.cat([_input_gradient(model, path[i:i + batch_size], targets[i:i + batch_size])
                           for i in range(0, len(path), batch_size)])
    mean_grad = (grads.view(steps + 1, *xd.shape) * weights.view(-1, 1, 1, 1, 1)).sum(0)
    return ((xd - base) * mean_grad).to(x.device)


@torch.no_grad()
def completeness_gap(model: nn.Module, x: torch.Tensor, target: torch.Tensor, attributions: torch.Tensor,
                     baseline: torch.Tensor | None = None) -> torch.Tensor:
    """Per image, Σ attributions − (S_c(x) − S_c(x′)): zero for exact integrated gradients
    (their completeness axiom); the quadrature leaves a small gap.

    Args: `x`, `target`, `baseline` as given to `integrated_gradients`; `attributions` its output
    (N × …, summed per image).
    Returns: shape (N,), on x's device."""
    xd, td = _check(model, x, target)
    base = torch.zeros_like(xd) if baseline is None else _finite(baseline, "baseline").to(xd.device).expand_as(xd)
    with eval_mode(model):
        change = _class_scores(model, xd, td) - _class_scores(model, base, td)
    return (attributions.to(xd.device).flatten(1).sum(1) - change).to(x.device)


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module,
             upsample: bool = True) -> torch.Tensor:
    """Selvaraju et al. 2017: ReLU(Σ_k α_k A^k), where A^k are `layer`'s output channels and
    α_k the spatial mean of ∂S_c/∂A^k (A: the layer's output at its last call in the
    forward pass). N × 1 × h × w at the layer's resolution, or
    bilinearly upsampled to the input's H × W (``upsample=True``).

    Args: `x` N × C × H × W images; `target` int64 classes (N,); `layer` a module inside `model`
    whose output is N × K × h × w with h · w > 1 (the last convolutional block, before pooling).
    Returns: N × 1 × H × W maps ≥ 0 (N × 1 × h × w when not `upsample`), on x's device.
    Example: ``cam = grad_cam(resnet, x, y, layer=resnet.features[-3])`` (a `models.ResNet`'s last block)."""
    xd, td = _check(model, x, target)
    if not any(m is layer for m in model.modules()):
        raise ValueError("layer must be a module inside model (e.g. model.features[-1])")
    captured = []
    hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with eval_mode(model):
            scores = _class_scores(model, xd, td)
    finally:
        hook.remove()
    activations = captured[-1]  # a module applied more than once (a shared activation): its last use
    if activations.dim() != 4:
        raise ValueError(f"Grad-CAM needs a convolutional layer's N × K × h × w output, got "
                         f"{tuple(activations.shape)}")
    if activations.shape[2] * activations.shape[3] == 1:  # a pooled 1 × 1 map: the upsampled CAM is constant
        raise ValueError("Grad-CAM needs a layer with spatial extent (h × w > 1), got a 1 × 1 output: take the "
                         "last convolutional block's output, before global pooling")
    grads = torch.autograd.grad(scores.sum(), activations)[0]
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * activations).sum(1, keepdim=True)).detach()
    if upsample:
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return cam.to(x.device)


@torch.no_grad()
def _probability_curve(model: nn.Module, start: torch.Tensor, finish: torch.Tensor, target: torch.Tensor,
                       saliency: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Target probability of images that take `finish`'s pixels in place of `start`'s, the
    most salient first, for each fraction of pixels: N × len(fractions)."""
    n, _, h, w = start.shape
    if saliency.shape[0] != n or saliency.shape[2:] != (h, w):
        raise ValueError(f"saliency must be N × C × {h} × {w} for {n} images, got {tuple(saliency.shape)}")
    per_pixel = saliency.to(start.device).abs().sum(1).flatten(1)  # channels summed
    rank = per_pixel.argsort(1, descending=True).argsort(1)  # 0 = most salient
    curve = []
    with eval_mode(model):
        for fraction in fractions.tolist():
            swapped = (rank < round(fraction * h * w)).view(n, 1, h, w)
            images = torch.where(swapped, finish, start)
            curve.append(F.softmax(model(images), 1).gather(1, target[:, None]).squeeze(1))
    return torch.stack(curve, 1)


def deletion_curve(model: nn.Module, x: torch.Tensor, target: torch.Tensor, saliency: torch.Tensor,
                   steps: int = 20, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Petsiuk et al. 2018's deletion: the target class's probability as the most salient
    pixels are set to `fill`, a fraction 0, 1/steps, …, 1 at a time; a faithful map makes
    the probability fall fast.

    Args: `x` N × C × H × W images; `target` int64 classes (N,); `saliency` N × C′ × H × W maps (any C′,
    e.g. Grad-CAM's 1: pixels ranked by |saliency| summed over channels); `steps` the number of
    intervals; `fill` a finite value.
    Returns: (fractions, shape (steps + 1,); probabilities, N × (steps + 1)), both on x's device.
    Example: ``fractions, curve = deletion_curve(net, x, y, gradient(net, x, y)); auc(fractions, curve)``."""
    xd, td = _check(model, x, target)
    if not math.isfinite(fill):
        raise ValueError(f"fill must be a finite pixel value, got {fill}")
    fractions = torch.linspace(0, 1, steps + 1, device=x.device)
    curve = _probability_curve(model, xd, torch.full_like(xd, fill), td, saliency, fractions)
    return fractions, curve.to(x.device)


def insertion_curve(model: nn.Module, x: torch.Tensor, target: torch.Tensor, saliency: torch.Tensor,
                    steps: int = 20, start: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Petsiuk et al. 2018's insertion: the most salient pixels of `x` pasted into `start`
    (default: a copy of x blurred with σ = 5 pixels; the paper blurs 224-pixel images with
    σ = 5 too, which is a much weaker blur at that size) a fraction at a time; a faithful
    map makes the probability rise fast.

    Args: as `deletion_curve`; `start` finite images of x's shape (the default blur needs H, W > 10).
    Returns: (fractions, shape (steps + 1,); probabilities, N × (steps + 1)), both on x's device."""
    xd, td = _check(model, x, target)
    start = blur(xd) if start is None else _finite(start, "start")
    fractions = torch.linspace(0, 1, steps + 1, device=x.device)
    curve = _probability_curve(model, start.to(xd.device), xd, td, saliency, fractions)
    return fractions, curve.to(x.device)


def blur(x: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """A Gaussian blur of N × C × H × W images (kernel 4σ + 1 wide, reflected edges).

    Args: `x` N × C × H × W, with H and W larger than the kernel's radius, max(1, round(2σ));
    `sigma` > 0 pixels.
    Returns: the blurred images, x's shape, dtype and device."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma}")
    radius = max(1, round(2 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def edges(x: torch.Tensor) -> torch.Tensor:
    """The Sobel edge strength of each image's channel mean: a map that knows nothing of any
    network, which Adebayo et al. 2018 set beside saliency maps (scikit-image's ``sobel``:
    3 × 3 kernels divided by 4, √((h² + v²)/2), edges padded by repeating the border).

    Args: `x` N × C × H × W.
    Returns: N × 1 × H × W, x's dtype and device."""
    if x.dim() != 4:
        raise ValueError(f"images must be N × C × H × W, got shape {tuple(x.shape)}")
    grey = F.pad(_finite(x, "images").mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device) / 4
    diff = torch.tensor([1.0, 0.0, -1.0], dtype=x.dtype, device=x.device)
    horizontal = F.conv2d(grey, (diff[:, None] * smooth[None, :]).view(1, 1, 3, 3))
    vertical = F.conv2d(grey, (smooth[:, None] * diff[None, :]).view(1, 1, 3, 3))
    return ((horizontal**2 + vertical**2) / 2).sqrt()


def auc(fractions: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    """Area under each row of `curve` over `fractions` (trapezoid rule).

    Args: `fractions` shape (S,); `curve` … × S, e.g. N × S.
    Returns: shape …, e.g. (N,), on curve's device."""
    return torch.trapezoid(curve, fractions.to(curve.device), dim=-1)


def parametrised_layers(model: nn.Module) -> list[nn.Module]:
    """The modules that hold parameters of their own, in `model.modules()` (registration) order.

    Returns: a list of modules (the model's own, not copies)."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def randomised_copy(model: nn.Module, top: int, generator: torch.Generator | None = None) -> nn.Module:
    """A copy of `model` whose last `top` parametrised layers are re-initialised with their
    own ``reset_parameters`` (Adebayo et al. 2018's cascading randomisation), one layer at a
    time from the logits down: with the same `generator` seed, the copy for top = k + 1
    has the same new weights as the copy for k in its top k layers (the cascade is
    cumulative). The new weights are drawn on the CPU from a forked RNG, so no global
    random state changes; the copy ends on the model's device. The model is untouched.

    Args: `top` in 0 … len(`parametrised_layers(model)`) (0: an exact copy); `generator` (a CPU one)
    seeds the new weights; without one they come from, and advance, the global RNG.
    Returns: the new module."""
    layers = parametrised_layers(model)
    if not 0 <= top <= len(layers):
        raise ValueError(f"top must lie in 0 … {len(layers)} (the parametrised layers), got {top}")
    device = next(model.parameters()).device
    randomised = copy.deepcopy(model).cpu()
    fork = torch.random.fork_rng(devices=[]) if generator is not None else nullcontext()
    with fork:
        if generator is not None:
            torch.default_generator.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        for layer in reversed(parametrised_layers(randomised)[len(layers) - top:]):
            if not hasattr(layer, "reset_parameters"):
                raise ValueError(f"{type(layer).__name__} has no reset_parameters to randomise it with")
            layer.reset_parameters()
    return randomised.to(device)


def _per_image(value, n: int, name: str, device, dtype=torch.float32) -> torch.Tensor:
    """A setting given once or per image, as a length-`n` tensor."""
    t = torch.as_tensor(value, dtype=dtype, device=device).flatten()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"{name} must be one value or one per image ({n}), got {t.numel()}")
    return t


def class_model(model: nn.Module, target: torch.Tensor, start: torch.Tensor, steps: int = 200,
                lr=0.02, decay=1e-3, blur_every=0, blur_sigma: float = 0.5, jitter: int = 0,
                record=(), generator: torch.Generator | None = None) -> dict[int, torch.Tensor]:
    """Class-model visualisation: starting from `start` (N × C × H × W in [0, 1], noise or
    a photo), gradient ascent on the class score S_c of `target` (Simonyan et al. 2014),
    with Yosinski et al. 2015's regularisers after each step:

    x ← clip₀¹(½ + (1 − decay)·(x + lr·g/mean|g| − ½)),  g = ∂S_c/∂x at x rolled by a
    random shift of up to `jitter` pixels (Mordvintsev et al. 2015's jitter, the same shift
    for the batch), and every `blur_every` steps (0 = never) a Gaussian blur of
    `blur_sigma` pixels. The decay is Simonyan's L2 penalty λ‖x − ½‖² in Yosinski's form
    (centred on mid-grey, the mean the classifier subtracts); dividing the gradient by its
    mean absolute value (per image, as DeepDream does) makes `lr` the mean change of a
    pixel value per step, so that one `lr` suits every class. `lr`, `decay` and
    `blur_every` may be given per image, so that one batch runs a whole sweep of settings.
    The model's mode is restored and its parameters' gradients left untouched.

    Args: `target` int64 classes (N,); `start` N × C × H × W in [0, 1]; `steps` ≥ 1; `lr` > 0,
    `decay` in [0, 1) and `blur_every` (whole, ≥ 0) one value or one per image; `blur_sigma` > 0;
    `jitter` ≥ 0 pixels; `record` steps in 1 … `steps`; `generator` (a CPU one) draws the shifts.
    Returns: ``{step: N × C × H × W}``, the images after each step listed in `record` and after the
    last, on `start`'s device."""
    x, target = _check(model, start, target)
    if x.min() < 0 or x.max() > 1:
        raise ValueError("start images must have pixels in [0, 1]")
    if steps < 1 or jitter < 0 or blur_sigma <= 0:
        raise ValueError(f"need steps >= 1, jitter >= 0, blur_sigma > 0; got {steps}, {jitter}, {blur_sigma}")
    record = sorted({*record, steps})
    if record[0] < 1 or record[-1] > steps:
        raise ValueError(f"record must list steps in 1 … {steps}, got {record}")
    n, device = len(x), x.device
    lr = _per_image(lr, n, "lr", device).view(-1, 1, 1, 1)
    decay = _per_image(decay, n, "decay", device).view(-1, 1, 1, 1)
    period = _per_image(blur_every, n, "blur_every", "cpu", torch.float64)  # checked on the CPU
    if not ((lr > 0).all() and (decay >= 0).all() and (decay < 1).all()):  # NaN fails too
        raise ValueError("need lr > 0 and 0 <= decay < 1")
    if not ((period >= 0).all() and (period == period.round()).all()):
        raise ValueError("blur_every must be whole numbers >= 0 (0 = never)")
    keep, blur_every = 1 - decay, period.long().to(device)
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=generator).tolist()
    images = {}
    x = x.detach().clone()
    with eval_mode(model):
        for step, (dy, dx) in enumerate(shifts, start=1):
            g = _input_gradient(model, x.roll((dy, dx), (2, 3)), target).roll((-dy, -dx), (2, 3))
            g = g / g.abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-12)
            x = (0.5 + keep * (x + lr * g - 0.5)).clamp(0, 1)
            blurred = (blur_every > 0) & (step % blur_every.clamp_min(1) == 0)
            if blurred.any():
                x = torch.where(blurred.view(-1, 1, 1, 1), blur(x, blur_sigma), x)
            if step in record:
                images[step] = x.to(start.device)
    return images


def rank_correlation(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation between two maps of each image (N × …, flattened per
    image; ties get their average rank, as `scipy.stats.spearmanr` gives them), N values;
    NaN where a map is constant (e.g. an all-zero Grad-CAM), where no correlation exists.
    Adebayo et al. 2018 compare absolute maps this way.

    Args: `maps_a`, `maps_b` N × … of the same shape, any device (ranked on the CPU).
    Returns: float32 of shape (N,), on `maps_a`'s device."""
    from scipy.stats import rankdata

    if maps_a.shape != maps_b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(maps_a.shape)} and {tuple(maps_b.shape)}")
    a = torch.from_numpy(rankdata(maps_a.detach().flatten(1).cpu().double().numpy(), axis=1))
    b = torch.from_numpy(rankdata(maps_b.detach().flatten(1).cpu().double().numpy(), axis=1))
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 0, (a * b).sum(1) / norms.clamp_min(1e-300), torch.nan).float().to(maps_a.device)
