"""Adversarial attacks: FGSM and PGD (L∞ and L2), their statistics, and transfer.

Conventions follow torchattacks: images in [0, 1], labels as class indices, the result
has the input's shape and device and stays in [0, 1] (the work runs on the model's
device). An attack puts the model in eval mode and restores its mode afterwards; it
takes gradients with `torch.autograd.grad`, so the model's parameter ``.grad`` fields
are left untouched. Untargeted attacks increase the loss of the true class ``y``; with
``targeted=True``, ``y`` holds the target classes and the attack decreases their loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, overload

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .train import channels_last as _channels_last
from .train import eval_mode as _eval_mode
from .train import to_model_device

NORMS = ("linf", "l2")


def _check(x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float = 1.0, steps: int = 1,
           norm: str = "linf") -> None:
    """Arguments checked once, before any work (``not v >= 0`` also catches NaN)."""
    if not eps >= 0 or eps == float("inf"):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    if not alpha > 0 or alpha == float("inf"):
        raise ValueError(f"alpha (the step size) must be a finite number > 0, got {alpha}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError("images x contain NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"images x must lie in [0, 1], got values in [{x.min():.3g}, {x.max():.3g}]")
    if y.shape != (len(x),):
        raise ValueError(f"labels y must have shape ({len(x)},) to match x, got {tuple(y.shape)}")
    if y.dtype != torch.long:
        raise TypeError(f"labels y must be int64 class indices, not {y.dtype}")


def _check_labels(y: torch.Tensor, logits: torch.Tensor) -> None:
    if y.numel() and (y.min() < 0 or y.max() >= logits.shape[1]):
        raise ValueError(f"labels y must be class indices in [0, {logits.shape[1] - 1}], "
                         f"got values in [{y.min()}, {y.max()}]")


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample value to broadcast against x."""
    return v.view(-1, *[1] * (x.dim() - 1))


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, targeted: bool = False) -> torch.Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015), L∞.

    x_adv = clamp(x + eps · sign(∇ₓ loss), 0, 1), one step. Defaults: none; typical
    eps 8/255 for CIFAR, 0.1–0.3 for MNIST-like images.

    Args: `model` maps N × C × H × W images to N × classes logits; `x` images in [0, 1];
    `y` int64 labels (N,), the target classes when `targeted`.
    Returns: the adversarial images, x's shape and device.
    Example: ``x_adv = fgsm(net, x, y, eps=0.1)``.
    """
    _check(x, y, eps)
    home = x.device
    x, y = to_model_device(model, x, y)
    with _eval_mode(model):
        x_adv = x.clone().detach().requires_grad_(True)
        logits = model(x_adv)
        _check_labels(y, logits)
        loss = F.cross_entropy(logits, y)
        (grad,) = torch.autograd.grad(-loss if targeted else loss, x_adv)
    return (x + eps * grad.sign()).clamp(0, 1).detach().to(home)


@overload
def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = ..., alpha: float = ..., steps: int = ...,
        norm: str = ..., targeted: bool = ..., random_start: bool = ..., return_iterations: Literal[False] = ...,
        batch_size: int | None = ...) -> torch.Tensor: ...


@overload
def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = ..., alpha: float = ..., steps: int = ...,
        norm: str = ..., targeted: bool = ..., random_start: bool = ..., *, return_iterations: Literal[True],
        batch_size: int | None = ...) -> tuple[torch.Tensor, torch.Tensor]: ...


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.03, alpha: float = 0.01,
        steps: int = 40, norm: str = "linf", targeted: bool = False, random_start: bool = True,
        return_iterations: bool = False, batch_size: int | None = None):
    """Projected Gradient Descent (Madry et al. 2018), L∞ or L2.

    Repeat `steps` times: step of size `alpha` along sign(∇ₓ loss) (L∞) or ∇ₓ loss / ‖∇ₓ loss‖₂
    (L2), project back onto the eps-ball around x, clamp to [0, 1]. With `random_start`
    the search starts at a random point of the ball (L∞: uniform; L2: uniform direction
    and radius). Defaults: eps 0.03, alpha 0.01, 40 steps, L∞. `batch_size` attacks that
    many images at a time (all at once by default), to bound memory on large sets.

    Args: `model` maps N × C × H × W images to N × classes logits; `x` images in [0, 1];
    `y` int64 labels (N,), the target classes when `targeted`.
    Returns: the adversarial images, x's shape and device; with ``return_iterations=True``
    also, per sample (N,), the first iteration whose iterate fooled the model (0 = the
    starting point; -1 = never).
    Example: ``x_adv = pgd(net, x, y, eps=8 / 255, alpha=2 / 255, steps=10)``.
    """
    _check(x, y, eps, alpha, steps, norm)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    size = batch_size or max(len(x), 1)
    parts = [_pgd(model, x[i:i + size], y[i:i + size], eps, alpha, steps, norm, targeted, random_start,
                  return_iterations, check_labels=True) for i in range(0, max(len(x), 1), size)]
    if return_iterations:
        return torch.cat([a for a, _ in parts]), torch.cat([f for _, f in parts])
    return torch.cat(parts)


def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, norm: str,
         targeted: bool, random_start: bool, return_iterations: bool, check_labels: bool, clip_start: bool = True):
    """`pgd` on one batch, arguments already checked; the labels' range is checked against
    the first logits when `check_labels` (a host sync, skipped inside training loops).
    ``clip_start=False`` takes the first gradient at the random start itself, outside
    [0, 1] where it falls there; every later iterate is clamped."""
    home, images = x.device, x.dim() == 4
    x, y = to_model_device(model, x.detach(), y)
    if images:  # channels-last convolutions are several times faster on a CPU
        x = x.contiguous(memory_format=torch.channels_last)
    if random_start and norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    elif random_start:  # uniform radius in [0, eps] along a uniform direction
        direction = torch.randn_like(x)
        delta = direction / _per_sample(_l2(direction).clamp_min(1e-12), x) * \
            _per_sample(eps * torch.rand(len(x), device=x.device), x)
    else:
        delta = torch.zeros_like(x)
    x_adv = (x + delta).clamp(0, 1) if clip_start else x + delta
    first = torch.full((len(x),), -1, dtype=torch.long, device=x.device)

    def note_fooled(logits: torch.Tensor, i: int) -> torch.Tensor:  # no host sync: stays on the device
        fooled = (logits.argmax(1) == y) if targeted else (logits.argmax(1) != y)
        return torch.where((first < 0) & fooled, i, first)

    with _eval_mode(model), _channels_last(model, enabled=images):
        for i in range(steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            if i == 0 and check_labels:
                _check_labels(y, logits)
            if return_iterations:
                first = note_fooled(logits.detach(), i)
            loss = F.cross_entropy(logits, y)
            (grad,) = torch.autograd.grad(-loss if targeted else loss, x_adv)
            with torch.no_grad():
                if norm == "linf":
                    x_adv = x_adv + alpha * grad.sign()
                    delta = (x_adv - x).clamp(-eps, eps)
                else:
                    x_adv = x_adv + alpha * grad / _per_sample(_l2(grad).clamp_min(1e-12), x)
                    delta = x_adv - x
                    delta = delta * _per_sample((eps / _l2(delta).clamp_min(1e-12)).clamp(max=1.0), x)
                x_adv = (x + delta).clamp(0, 1)
        if return_iterations:
            with torch.no_grad():
                first = note_fooled(model(x_adv), steps)
    x_adv = x_adv.detach().contiguous().to(home)
    return (x_adv, first.to(home)) if return_iterations else x_adv


@torch.no_grad()
def attack_stats(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                 targeted: bool = False) -> dict[str, float]:
    """Success rate, mean L2 and L∞ perturbation, and mean confidence of the adversarial
    predictions (in the predicted class, or in the target class when `targeted`).

    Args: `model` maps images to N × classes logits (run in eval mode, on its device); `x` the clean
    images and `x_adv` the attacked ones (N × C × H × W); `y` int64 labels (N,), the target classes
    when `targeted`.
    Returns: ``{"success", "accuracy", "l2", "linf", "confidence"}``, floats (means over N)."""
    x, x_adv, y = to_model_device(model, x, x_adv, y)
    with _eval_mode(model):
        probs = F.softmax(model(x_adv), dim=1)
    pred = probs.argmax(1)
    success = (pred == y) if targeted else (pred != y)
    confidence = probs.gather(1, (y if targeted else pred)[:, None]).squeeze(1)
    delta = x_adv - x
    return {"success": success.float().mean().item(), "accuracy": (pred == y).float().mean().item(),
            "l2": _l2(delta).mean().item(), "linf": delta.flatten(1).abs().amax(1).mean().item(),
            "confidence": confidence.mean().item()}


def accuracy_under(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   attack: Callable[..., torch.Tensor] | None = None, **settings) -> float:
    """The accuracy of `model` on the images ``attack(model, x, y, **settings)`` crafts (e.g.
    `fgsm`, `pgd`), or on `x` itself when `attack` is None (clean, or images perturbed
    beforehand).

    Args: `x` N × C × H × W images in [0, 1]; `y` int64 labels (N,); `attack` a function
    ``(model, x, y, **settings) -> x_adv``; `settings` its keyword arguments.
    Returns: the accuracy, a float in [0, 1].
    Example: ``accuracy_under(net, x, y, pgd, eps=0.3, alpha=0.01, steps=40)``."""
    images = x if attack is None else attack(model, x, y, **settings)
    return attack_stats(model, x, images, y)["accuracy"]


def accuracy_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: list[float],
                   attack: Callable[..., torch.Tensor] = pgd, **settings) -> list[float]:
    """`accuracy_under` the attack at each ε of `eps_values`, in order; at ε = 0 the attack
    has nowhere to go, so that point is the clean accuracy (and draws no random start).

    Args: `x`, `y` as in `accuracy_under`; `eps_values` the ε to try; `attack` called as
    ``attack(model, x, y, eps=ε, **settings)``.
    Returns: a list of floats, one accuracy per ε.
    Example: ``accuracy_curve(net, x, y, [0, 0.1, 0.2], pgd, alpha=0.01, steps=40)``."""
    return [accuracy_under(model, x, y, attack, eps=eps, **settings) if eps else accuracy_under(model, x, y)
            for eps in eps_values]


def transfer_matrix(models: dict[str, nn.Module], attack: Callable[[nn.Module, torch.Tensor, torch.Tensor],
                    torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Untargeted success of examples crafted on each model (rows) against every model
    (columns); the diagonal is the white-box success.

    Args: `models` ``{name: model}``; `attack` ``(model, x, y) -> x_adv``, e.g.
    ``functools.partial(pgd, eps=0.1)``; `x` N × C × H × W images in [0, 1]; `y` int64 labels (N,).
    Returns: a DataFrame of success rates in [0, 1], index "crafted on", columns "evaluated on"."""
    table = {}
    for source, source_model in models.items():
        x_adv = attack(source_model, x, y)
        table[source] = {target: attack_stats(m, x, x_adv, y)["success"] for target, m in models.items()}
    frame = pd.DataFrame(table).T
    frame.index.name, frame.columns.name = "crafted on", "evaluated on"
    return frame


@dataclass(frozen=True)
class AdversarialBatches:
    """Adversarial training as a `fit(..., perturb=...)` hook: each training batch is
    replaced, with probability `p`, by its PGD version (eps, alpha, steps, random start).

    ``steps=1, alpha=1.25 * eps, clip_start=False`` is FGSM with random start, the
    "fast" adversarial training of Wong et al. 2020: their gradient is taken at the random
    start as drawn, before it is clamped to [0, 1]. With the default ``clip_start=True``
    (the start clamped first, as PGD attacks do) a pixel at 0 or 1 loses half its random
    start, and with ``alpha > eps`` every such pixel the step moves away from the bound
    lands on the ball's edge, where plain FGSM puts it: on MNIST's black background at
    ε = 0.3 that alone brings back FGSM training's failure (chapter 11).
    ``random_start=False, alpha=eps`` is plain FGSM training, and ``p=0.5`` mixes clean and
    adversarial batches, both as in Goodfellow et al. 2015.
    """

    eps: float
    alpha: float
    steps: int = 1
    p: float = 0.5
    random_start: bool = True
    clip_start: bool = True

    def __repr__(self) -> str:  # the cache keys on it: the two switches show only when not the
        # default, so keys (and the seeds drawn from them) of runs made before they existed stay the same
        switches = "".join(f", {name}=False" for name in ("random_start", "clip_start") if not getattr(self, name))
        settings = f"eps={self.eps!r}, alpha={self.alpha!r}, steps={self.steps!r}, p={self.p!r}"
        return f"AdversarialBatches({settings}{switches})"

    def __post_init__(self):
        _check(torch.zeros(0), torch.zeros(0, dtype=torch.long), self.eps, self.alpha, self.steps)
        if not 0 <= self.p <= 1:
            raise ValueError(f"p (the fraction of adversarial batches) must be in [0, 1], got {self.p}")
        for switch in ("random_start", "clip_start"):
            if not isinstance(getattr(self, switch), bool):
                raise TypeError(f"{switch} must be True or False, got {getattr(self, switch)!r}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        # settings checked once in __post_init__; `fit` has checked the data: no host sync per batch
        return _pgd(model, x, y, self.eps, self.alpha, self.steps, "linf", targeted=False,
                    random_start=self.random_start, return_iterations=False, check_labels=False,
                    clip_start=self.clip_start)
