"""Loss landscapes: a network's loss as a function of its weights.

A network's trainable parameters, flattened in `model.parameters()` order, are one point
θ ∈ R^P (`flat`). The loss at many points — along a line between two solutions, on a
plane through one, along a curve — is evaluated point by point on a copy of the model,
each point on large batches of data in eval mode with channels-last convolutions
(`losses_at`): on this CPU that is 4–5× faster than evaluating 16 points at once with
`torch.func.vmap`, which turns convolutions into slow grouped ones. Buffers (batch-norm
statistics) stay those of the model. Curvature: the exact Hessian for tiny models
(`hessian_eigenvalues`), power iteration on Hessian-vector products for larger ones
(`top_hessian_eigenvalue`); input sensitivity as the Frobenius norm of the input–output
Jacobian (Novak et al. 2018). Directions for slices are filter-normalised (Li et al. 2018).
Mode connectivity (Garipov et al. 2018) trains a quadratic Bézier curve between two
solutions with `nblib.fit` (`BezierCurve`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev, vmap

from .data import TensorSet
from .train import eval_mode, evaluate


def flat(model: nn.Module) -> torch.Tensor:
    """The model's trainable parameters as one detached vector θ (in `parameters()` order).

    Returns: θ, shape (P,), P the number of trainable parameters, on their device and dtype (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def load_flat_(model: nn.Module, theta: torch.Tensor) -> nn.Module:
    """Write the vector θ into the model's trainable parameters (in place).

    Args: `theta` shape (P,), as `flat` gives it, any device.
    Returns: `model`."""
    params = [p for p in model.parameters() if p.requires_grad]
    if theta.shape != (sum(p.numel() for p in params),):
        raise ValueError(f"θ has shape {tuple(theta.shape)}, the model has {sum(p.numel() for p in params)} "
                         "trainable parameters")
    with torch.no_grad():  # copy_ keeps each parameter's memory layout
        for p, part in zip(params, theta.split([p.numel() for p in params]), strict=True):
            p.copy_(part.view(p.shape))
    return model


def _unflatten(model: nn.Module, thetas: torch.Tensor) -> dict[str, torch.Tensor]:
    """K × P points → {name: K × shape}, a batch of parameter sets for `functional_call`."""
    out, start = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = thetas[..., start:start + p.numel()].reshape(*thetas.shape[:-1], *p.shape)
            start += p.numel()
    if start != thetas.shape[-1]:
        raise ValueError(f"points have {thetas.shape[-1]} coordinates, the model has {start} trainable parameters")
    return out


def _call(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`model` evaluated with `params`, its buffers taken to `x`'s device (the model stays where it is)."""
    return functional_call(model, (params, {k: b.to(x.device) for k, b in model.named_buffers()}), (x,))


@torch.no_grad()
def losses_at(model: nn.Module, points: torch.Tensor, data: TensorSet, batch_size: int = 1000
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss (cross-entropy, or squared error for float targets) and accuracy of the
    model's architecture at each of the K points (K × P, or one point P) on `data`, on a
    copy of the model (the model itself is untouched). Two tensors of length K, on the
    points' device.

    Args: `points` K × P or P; `data` a non-empty TensorSet, evaluated as `nblib.train.evaluate` does
    (squared error summed over each sample's outputs); `batch_size` per forward pass.
    Returns: (losses, accuracies), each float32 of shape (K,); accuracies NaN for float targets."""
    if points.dim() == 1:
        points = points[None]
    if len(data) == 0 or len(points) == 0:
        raise ValueError(f"losses_at needs points and data, got {len(points)} points and {len(data)} samples")
    work = copy.deepcopy(model)
    losses, accuracies = [], []
    for theta in points:
        loss, accuracy = evaluate(load_flat_(work, theta), data, batch_size)
        losses.append(loss)
        accuracies.append(accuracy)
    return torch.tensor(losses, device=points.device), torch.tensor(accuracies, device=points.device)


def interpolation(theta_a: torch.Tensor, theta_b: torch.Tensor, alphas) -> torch.Tensor:
    """The points θ(α) = (1 − α) θ_a + α θ_b, one row per α (α outside [0, 1] extrapolates).

    Args: `theta_a`, `theta_b` shape (P,); `alphas` a 1-D sequence or tensor of K values.
    Returns: K × P, on θ_a's device and in its dtype."""
    alphas = torch.as_tensor(alphas, dtype=theta_a.dtype, device=theta_a.device)[:, None]
    return (1 - alphas) * theta_a + alphas * theta_b


def filter_normalised_direction(model: nn.Module, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random Gaussian direction in parameter space, each filter (each output unit's
    slice of a weight with ≥ 2 dimensions) rescaled to the norm of the same filter of the
    model's weights; zero for biases and normalisation parameters (Li et al. 2018, §4).

    Args: `generator` a CPU generator for the draws (default: the global one).
    Returns: a float32 direction of shape (P,), laid out as `flat` lays out θ, on the model's device."""
    parts = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.dim() < 2:
            parts.append(torch.zeros(p.numel()))
            continue
        d = torch.randn(p.shape, generator=generator)
        w = p.detach().cpu().float()
        scale = w.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(1e-12)
        parts.append((d * scale.view(-1, *[1] * (p.dim() - 1))).flatten())
    return torch.cat(parts).to(next(model.parameters()).device)


def plane(theta: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, a, b) -> torch.Tensor:
    """The points θ + a_i d1 + b_j d2 of a grid, row-major (len(a) · len(b) × P).

    Args: `theta`, `d1`, `d2` shape (P,); `a`, `b` 1-D sequences or tensors of coefficients.
    Returns: len(a) · len(b) × P, row i · len(b) + j for (a_i, b_j), on θ's device.
    Example: ``losses_at(net, plane(flat(net), d1, d2, a, b), data)[0].reshape(len(a), len(b))``."""
    a = torch.as_tensor(a, dtype=theta.dtype, device=theta.device)
    b = torch.as_tensor(b, dtype=theta.dtype, device=theta.device)
    grid_a, grid_b = torch.meshgrid(a, b, indexing="ij")
    return theta + grid_a.reshape(-1, 1) * d1 + grid_b.reshape(-1, 1) * d2


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="sum") if y.dtype == torch.long else \
        F.mse_loss(out, y, reduction="sum")


def _loss_of_theta(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    def loss(theta):
        return _loss(_call(model, _unflatten(model, theta), x), y) / len(y)
    return loss


def hessian_eigenvalues(model: nn.Module, data: TensorSet) -> torch.Tensor:
    """All eigenvalues (ascending) of the exact Hessian of the mean loss on `data` (cross-
    entropy for class labels, squared error for float targets) at the model's weights.
    P × P: for tiny models only (P ≤ 5,000).

    Args: `model` with P ≤ 5,000 trainable parameters (run in eval mode); `data` a TensorSet, taken
    in one batch.
    Returns: P float64 eigenvalues, ascending, on `data.x`'s device."""
    theta = flat(model)
    if len(theta) > 5000:
        raise ValueError(f"the exact Hessian of {len(theta):,} parameters is too large; use top_hessian_eigenvalue")
    device = theta.device
    with eval_mode(model):
        h = hessian(_loss_of_theta(model, data.x.to(device), data.y.to(device)))(theta)
    return torch.linalg.eigvalsh(h.double()).to(data.x.device)


def top_hessian_eigenvalue(model: nn.Module, data: TensorSet, iterations: int = 30, seed: int = 0,
                           batch_size: int = 1000) -> float:
    """The Hessian eigenvalue of largest magnitude of the mean loss on `data`, by power
    iteration on Hessian-vector products (double backward, in eval mode, in batches of
    `batch_size`), from a seeded random start.

    Args: `data` a non-empty TensorSet; `iterations` ≥ 1 power steps; `seed` the start's;
    `batch_size` samples per double backward.
    Returns: the eigenvalue (its sign kept), a float: the Rayleigh quotient at the last step."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    if len(data) == 0:
        raise ValueError("top_hessian_eigenvalue needs data, got an empty set")
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g).to(device) for p in params]
    eigenvalue = 0.0
    with eval_mode(model):
        for _ in range(iterations):
            norm = torch.sqrt(sum((u * u).sum() for u in v))
            v = [u / norm for u in v]
            hv = [torch.zeros_like(p) for p in params]
            for i in range(0, len(data), batch_size):
                x, y = data.x[i:i + batch_size].to(device), data.y[i:i + batch_size].to(device)
                out = model(x)
                loss = _loss(out, y) / len(data)
                grads = torch.autograd.grad(loss, params, create_graph=True)
                for h, part in zip(hv, torch.autograd.grad(grads, params, grad_outputs=v), strict=True):
                    h += part
            eigenvalue = sum((a * b).sum() for a, b in zip(v, hv, strict=True)).item()
            v = [h.detach() for h in hv]
    return eigenvalue


def input_jacobian_norm(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per input, the Frobenius norm of the Jacobian of the softmax output with respect to
    the input (Novak et al. 2018's sensitivity measure); one value per row of `x`.

    Args: `x` N × … inputs, N ≥ 1 (each row's Jacobian by vmap, in chunks of 256, on the model's device).
    Returns: shape (N,), on x's device."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    device = next(model.parameters()).device

    def probabilities(xi):
        return _call(model, params, xi[None]).softmax(1)[0]

    with eval_mode(model):
        jac = torch.cat([vmap(jacrev(probabilities))(x[i:i + 256].to(device)) for i in range(0, len(x), 256)])
    return jac.flatten(1).norm(dim=1).to(x.device)


class BezierCurve(nn.Module):
    """A quadratic Bézier curve φ(t) = (1−t)² θ_a + 2t(1−t) θ_c + t² θ_b between two
    solutions of one architecture, whose only trainable parameter is the bend θ_c
    (initialised at the midpoint). In training mode each forward pass evaluates the
    network at a fresh t ~ U(0, 1), so `nblib.fit(curve, data)` minimises the loss
    averaged along the curve (Garipov et al. 2018); `at(t)` gives points on it."""

    def __init__(self, model: nn.Module, theta_a: torch.Tensor, theta_b: torch.Tensor):
        super().__init__()
        self.model = [model]  # a list: not registered, so its weights are not trained
        self.register_buffer("theta_a", theta_a.detach().clone())
        self.register_buffer("theta_b", theta_b.detach().clone())
        self.bend = nn.Parameter((theta_a.detach() + theta_b.detach()) / 2)

    def __repr__(self) -> str:  # the cache keys on it
        return f"BezierCurve({self.model[0]!r})"

    def at(self, t) -> torch.Tensor:
        """Points φ(t) for each t (one row each).

        Args: `t` a number, or a sequence or tensor of K numbers.
        Returns: K × P (1 × P for a number), on the curve's device, with gradient to the bend."""
        t = torch.as_tensor(t, dtype=self.bend.dtype, device=self.bend.device).reshape(-1, 1)
        return (1 - t) ** 2 * self.theta_a + 2 * t * (1 - t) * self.bend + t ** 2 * self.theta_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network at φ(t): t ~ U(0, 1), drawn per call, in training mode; t = 1/2 in eval mode
        (the curve's midpoint, not the bend θ_c).

        Args: `x` a batch for the architecture, any device.
        Returns: its outputs, on x's device (the model passed in stays where it is)."""
        t = torch.rand((), device=self.bend.device) if self.training else torch.tensor(0.5, device=self.bend.device)
        return _call(self.model[0], _unflatten(self.model[0], self.at(t)[0].to(x.device)), x)


class StackedGradientNorm:
    """A `fit` objective for a `models.MLPStack` of regression copies (labels N × copies):
    the sum over copies of ‖∇_θc L_c‖², each copy's squared gradient norm of its own mean
    squared error on the batch. Minimised (full batch), it drives every copy to a point
    where its gradient vanishes: a minimum, a saddle or a maximum — the course's way to
    find critical points. The "summed loss" handed to `fit` is that total times the batch
    size, so `fit`'s per-sample mean is the total itself; `epoch_end` gives each copy's
    last gradient norm (``grad norm 0``, ...)."""

    def __init__(self, copies: int):
        self.copies = copies
        self._last = torch.zeros(copies)

    def __repr__(self) -> str:  # the cache keys on it
        return f"StackedGradientNorm(copies={self.copies})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float):
        out = model(x).squeeze(2).T  # N × copies
        per_copy = ((out - y) ** 2).mean(0)
        params = list(model.parameters())
        grads = torch.autograd.grad(per_copy.sum(), params, create_graph=True)
        # stacked weights are in × copies × out, biases copies × out: sum all but the copy axis
        squared = sum(g.pow(2).sum(dim=(0, 2)) if g.dim() == 3 else g.pow(2).sum(dim=1) for g in grads)
        self._last = squared.detach().sqrt()
        return squared.sum() * len(x), out

    def epoch_end(self) -> dict[str, float]:
        return {f"grad norm {i}": v for i, v in enumerate(self._last.tolist())}
