"""Neural networks from scratch, in numpy only: what a network *is* before torch hides it.

Each layer has an explicit ``forward`` (which remembers what its ``backward`` needs) and
``backward`` (which takes the gradient of the loss with respect to the layer's output and
returns the gradient with respect to its input, storing those of its parameters). A
`Network` is a list of layers ending in the softmax cross-entropy loss, with L2
regularisation ``reg / 2 · Σ W²`` on the weight matrices (not the biases), as in the
course this chapter follows. Everything is batched: no Python loop runs over samples.
Training runs in float32; gradient checks run in float64 (`Network.astype_`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class Affine:
    """``y = x W + b`` for a batch ``x`` (N×in); He-initialised weights (std √(2/in)) unless
    `std` is given."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, std: float | None = None):
        std = np.sqrt(2.0 / n_in) if std is None else std
        self.params = {"W": (rng.standard_normal((n_in, n_out)) * std).astype(np.float32),
                       "b": np.zeros(n_out, np.float32)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x W + b``, remembering `x` for `backward`.

        Shape: N × in → N × out."""
        self._x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Store ``grads`` (``W`` in × out, ``b`` (out,)) and return the gradient with respect to the input.

        Args: `dout` N × out, the loss's gradient with respect to the last `forward`'s output.
        Returns: N × in."""
        self.grads = {"W": self._x.T @ dout, "b": dout.sum(0)}
        return dout @ self.params["W"].T


class ReLU:
    """``max(0, x)``; its gradient passes where the input was positive."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``max(0, x)``, remembering where x > 0; x's shape."""
        self._positive = x > 0
        return x * self._positive

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """`dout` (the last `forward`'s output's shape) zeroed where that input was ≤ 0."""
        return dout * self._positive


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores) (N×C) against labels `y` (N ints), and its
    gradient with respect to the scores: ``(softmax − one_hot(y)) / N``.

    Args: `scores` N × C; `y` integer classes (N,) in 0 … C − 1 (not checked here).
    Returns: (the loss, a float; its gradient, N × C)."""
    shifted = scores - scores.max(1, keepdims=True)  # the same softmax, without overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    rows = np.arange(len(y))
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    return float(-log_probs[rows, y].mean()), dscores / len(y)


class Network:
    """Layers applied in order, then softmax cross-entropy plus ``reg / 2 · Σ W²``."""

    def __init__(self, layers: list, reg: float = 0.0):
        if not (math.isfinite(reg) and reg >= 0):
            raise ValueError(f"reg must be a finite number ≥ 0, got {reg}")
        self.layers, self.reg = layers, reg

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Every parameter array, by name ``"<layer>.<W|b>"`` (the arrays themselves: update in place)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def astype_(self, dtype) -> Network:
        """Cast every parameter to `dtype` (float64 for gradient checks), in place; returns the network."""
        for layer in self.layers:
            layer.params = {k: v.astype(dtype) for k, v in layer.params.items()}
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores (N×C) for a batch of flattened inputs (N×D); each layer keeps what its
        `backward` needs."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """Loss on the batch, the gradient of every parameter (by `params` name), and the
        gradient with respect to the input ``x``.

        Args: `x` N × D finite inputs; `y` integer classes (N,) in 0 … C − 1 (both checked).
        Returns: (mean cross-entropy + ``reg / 2 · Σ W²``, a float; ``{name: gradient}`` shaped like
        the parameters; the input's gradient, N × D)."""
        _check_batch(x, y, self.layers[0].params["W"].shape[0], self.layers[-1].params["W"].shape[1])
        data_loss, dout = softmax_cross_entropy(self.scores(x), y)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads = {f"{i}.{k}": g for i, layer in enumerate(self.layers) for k, g in layer.grads.items()}
        weights = {name: w for name, w in self.params.items() if name.endswith(".W")}
        for name, w in weights.items():
            grads[name] = grads[name] + self.reg * w
        penalty = 0.5 * self.reg * sum(float((w.astype(np.float64) ** 2).sum()) for w in weights.values())
        return data_loss + penalty, grads, dout

    def predict(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Predicted classes, in batches.

        Args: `x` N × D; `batch_size` rows per batch.
        Returns: integer classes, shape (N,)."""
        return np.concatenate([self.scores(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """The share of rows of `x` (N × D) whose predicted class is `y`'s (N,): a float in [0, 1]."""
        return float((self.predict(x) == y).mean())


def softmax_classifier(n_in: int, n_classes: int, reg: float = 0.0, seed: int = 0) -> Network:
    """A linear classifier on the raw inputs (small random weights, std 0.001).

    Args: `n_in` inputs; `n_classes`; `reg` the L2 strength; `seed` of the weights.
    Returns: a float32 `Network` of one `Affine` layer."""
    return Network([Affine(n_in, n_classes, np.random.default_rng(seed), std=1e-3)], reg)


def two_layer_net(n_in: int, hidden: int, n_classes: int, reg: float = 0.0, seed: int = 0) -> Network:
    """affine → ReLU → affine, He-initialised weights, zero biases.

    Args: `n_in` inputs; `hidden` units; `n_classes`; `reg` the L2 strength; `seed` of the weights.
    Returns: a float32 `Network`."""
    rng = np.random.default_rng(seed)
    return Network([Affine(n_in, hidden, rng), ReLU(), Affine(hidden, n_classes, rng)], reg)


def _check_batch(x: np.ndarray, y: np.ndarray, n_in: int, n_classes: int) -> None:
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"x must be N × {n_in} (flattened inputs), got shape {x.shape}")
    if not np.issubdtype(y.dtype, np.integer):  # a wrong dtype is a TypeError here as in every module
        raise TypeError(f"y must hold integer classes, got {y.dtype}")
    if y.shape != (len(x),):
        raise ValueError(f"y must hold one integer class per row of x ({len(x)}), got shape {y.shape}")
    if len(y) and not 0 <= y.min() <= y.max() < n_classes:
        raise ValueError(f"y must hold classes 0..{n_classes - 1}, got {y.min()} to {y.max()}")
    if not np.isfinite(x).all():
        raise ValueError(f"x holds {(~np.isfinite(x)).sum()} NaN or infinite values")


@dataclass
class SGDRun:
    """What `sgd` returns (the numpy twin of `nblib.train.History`, which stays torch's):
    per epoch the mean training loss over the batches and the validation accuracy; the
    seconds and the number of updates."""
    train_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def sgd(net: Network, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch_size: int = 200,
        lr_decay: float = 1.0, seed: int = 0, val: tuple[np.ndarray, np.ndarray] | None = None,
        steps: int | None = None) -> SGDRun:
    """Plain minibatch SGD, in place: ``W ← W − lr · dW`` on each batch (drawn without
    replacement, a new order each epoch), the learning rate multiplied by `lr_decay` after
    every epoch. `steps`, if given, stops after that many updates (to compare batch sizes at
    an equal number of updates). Validation accuracy after every epoch if `val` is given.

    Args: `net` trained in place; `x` N × D inputs; `y` integer classes (N,); `epochs` ≥ 1; `lr` > 0;
    `lr_decay` > 0; `seed` draws the batches; `val` an (x, y) pair.
    Returns: an `SGDRun`. Raises: FloatingPointError when the loss stops being finite."""
    _check_batch(x, y, net.layers[0].params["W"].shape[0], net.layers[-1].params["W"].shape[1])
    if epochs < 1 or batch_size < 1 or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and a finite lr > 0, got {epochs}, {batch_size}, {lr}")
    if not (np.isfinite(lr_decay) and lr_decay > 0):
        raise ValueError(f"lr_decay must be a finite factor > 0, got {lr_decay}")
    rng, history, start = np.random.default_rng(seed), SGDRun(), time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):  # a loss gone non-finite raises below
        _sgd_epochs(net, x, y, epochs, lr, batch_size, lr_decay, rng, val, steps, history)
    history.seconds = time.perf_counter() - start
    return history


def _sgd_epochs(net, x, y, epochs, lr, batch_size, lr_decay, rng, val, steps, history) -> None:
    params = net.params
    for _ in range(epochs):
        order, total, batches = rng.permutation(len(x)), 0.0, 0
        for i in range(0, len(x), batch_size):
            if steps is not None and history.steps >= steps:
                break
            batch = order[i:i + batch_size]
            loss, grads, _ = net.loss(x[batch], y[batch])
            if not np.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss} after {history.steps} updates: lower the "
                                         f"learning rate (lr={lr})")
            for name, g in grads.items():
                params[name] -= lr * g
            total, batches, history.steps = total + loss, batches + 1, history.steps + 1
        if batches:
            history.train_loss.append(total / batches)
            if val is not None:
                history.val_acc.append(net.accuracy(*val))
        if steps is not None and history.steps >= steps:
            break
        lr *= lr_decay


def grad_check(f: Callable[[], float], params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
               h: float = 1e-5) -> dict[str, float]:
    """Largest relative error, per parameter, between the analytic gradients `grads` and
    centred finite differences ``(f(p + h) − f(p − h)) / 2h`` of the scalar ``f()``, which
    must read the (float64) arrays of `params`, perturbed here in place one entry at a
    time and restored. Relative error: ``|a − n| / max(|a| + |n|, 1e-12)``.

    Args: `f` a function of no arguments giving the loss; `params` ``{name: array}``; `grads`
    ``{name: analytic gradient}`` for the same names; `h` the step.
    Returns: ``{name: largest relative error}``, floats.
    Example: ``net.astype_(np.float64); grad_check(lambda: net.loss(x, y)[0], net.params, net.loss(x, y)[1])``."""
    errors = {}
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            kept = p[index]
            p[index] = kept + h
            up = f()
            p[index] = kept - h
            down = f()
            p[index] = kept
            numeric[index] = (up - down) / (2 * h)
        analytic = grads[name]
        errors[name] = float((np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-12)).max())
    return errors


def fooling_step(net: Network, x: np.ndarray, target: np.ndarray, eps: float, low: float, high: float) -> np.ndarray:
    """One targeted step of L∞ size `eps` (Goodfellow et al.'s sign step, towards `target`):
    ``x − eps · sign(∇ₓ loss(x, target))``, clipped to the input range [low, high].

    Args: `x` N × D inputs; `target` integer classes (N,); `eps` the step; `low`, `high` the inputs' range.
    Returns: the new inputs, N × D."""
    _, _, dx = net.loss(x, target)
    return np.clip(x - eps * np.sign(dx), low, high)
