"""Training without a DataLoader: the data set lives on the device as two tensors, each
epoch is one shuffle, each batch a slice.

``h = fit(model, train, test, epochs=5, lr=0.1)`` returns a `History` of per-epoch train
and test loss and accuracy. Labels decide the task: integer labels → cross-entropy and
accuracy, float targets → mean squared error (accuracy is NaN).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import interactive, pick_device
from .data import TensorSet


@dataclass
class History:
    """What `fit` records: per epoch the training loss and accuracy (over the epoch's batches) and,
    with a test set, the test loss and accuracy (accuracies NaN for regression); the training time
    (`seconds`) and speed (`samples_per_s`); and `extra`, the lists that `watch`, an objective's
    ``epoch_end`` and ``record_grad_norm`` add, by name."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    extra: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The history as a plain dict, ``{field: value}`` (lists copied): what the cache stores."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """The inverse of `to_dict`: `d` holds every field (missing ones take their defaults)."""
        return cls(**d)


def to_model_device(model: nn.Module, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors moved to the model's device, where the work runs (inputs may live on the
    CPU, the model on a GPU); the caller returns results to the input's device.

    Args: `model` a module with parameters (the first one's device is used); `tensors` any.
    Returns: a list of the tensors in order, on that device (the same objects where already there)."""
    device = next(model.parameters()).device
    return [t.to(device) for t in tensors]


def progress_bar(total: int, desc: str = "", enabled: bool = True):
    """tqdm: a widget in JupyterLab, plain text (updated every few seconds) when
    ``$NBLIB_BATCH=1`` (set by ``nblib run``, so executed notebooks stay small).

    Args: `total` the number of steps; `desc` the label; ``enabled=False`` shows nothing.
    Returns: a tqdm bar, also a context manager; ``bar.update(n)`` advances it."""
    if not interactive():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, disable=not enabled, mininterval=10, ascii=True)
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled)


def _loss(out: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="sum", label_smoothing=label_smoothing) if y.dtype == torch.long \
        else F.mse_loss(out, y, reduction="sum")


@contextmanager
def eval_mode(model: nn.Module):
    """Run the block with `model` in eval mode; restore its mode afterwards, even on error.

    Args: `model` any module.
    Returns: a context manager that yields `model`."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def channels_last(model: nn.Module, enabled: bool = True):
    """Run the block with `model`'s 4-D weights and buffers in channels-last memory order,
    then put back in contiguous order those that were: the values never change. On this
    CPU, channels-last convolutions train a `cnn([16, 32, 64])` ~1.5× and evaluate it ~3×
    faster. Nested uses leave the outer one's order alone.

    Args: `model` any module; ``enabled=False`` changes nothing.
    Returns: a context manager that yields `model`."""
    if not enabled:
        yield model
        return
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.dim() == 4]
    was_contiguous = [t.is_contiguous() for t in tensors]
    model.to(memory_format=torch.channels_last)
    masked = [m for m in model.modules() if isinstance(m, nn.Conv2d) and hasattr(m, "weight_orig")]
    hooks = [m.register_forward_pre_hook(_masked_weight_channels_last) for m in masked]
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()
        for t, contiguous in zip(tensors, was_contiguous, strict=False):
            if contiguous:
                t.data = t.data.contiguous()


def _masked_weight_channels_last(conv: nn.Conv2d, _inputs) -> None:
    # torch.nn.utils.prune recomputes `weight` as weight_orig * mask before each forward; with
    # one input channel the two memory orders coincide and the product comes out contiguous,
    # which sends the first block down the slow path (pruned cnn([16, 32, 64]) trained 1.3×
    # slower). Registered after the pruning hook, this runs after it.
    conv.weight = conv.weight.clone(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256, forward=None) -> torch.Tensor:
    """The model's outputs for `x` (or those of `forward`, e.g. ``model.features``),
    computed in eval mode in batches on the model's device (mode and memory order
    restored), returned on `x`'s device.

    Args: `x` N × … inputs, any device (N × C × H × W images run channels-last); `batch_size` inputs
    per forward pass; `forward` a function of a batch, called instead of `model`.
    Returns: N × … outputs (logits for a classifier), no gradient.
    Example: ``accuracy = (predict(net, test.x).argmax(1) == test.y).float().mean()``."""
    device = next(model.parameters()).device
    forward = forward or model
    images = x.dim() == 4
    layout = torch.channels_last if images else torch.contiguous_format
    with eval_mode(model), channels_last(model, enabled=images):
        return torch.cat([forward(x[i:i + batch_size].to(device).contiguous(memory_format=layout))
                          for i in range(0, max(len(x), 1), batch_size)]).to(x.device)


def evaluate(model: nn.Module, data: TensorSet, batch_size: int = 256) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `data`, computed as `predict` does (eval mode, batches).

    Args: `data` a non-empty TensorSet, int64 labels (N,) or float targets N × …; `batch_size` per pass.
    Returns: two floats: the mean over samples of the cross-entropy, or of each sample's squared error
    summed over its outputs (float targets); the accuracy, NaN for float targets."""
    out = predict(model, data.x, batch_size)
    y = data.y.to(out.device)
    accuracy = (out.argmax(1) == y).float().mean().item() if y.dtype == torch.long else math.nan
    return _loss(out, y).item() / len(y), accuracy


SCHEDULES = {"cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)), "constant": lambda p: 1.0,
             # Wong et al. 2020's cyclic rate: linearly up to the full rate at 2/5 of training, then down to 0
             "cyclic": lambda p: min(p / 0.4, (1 - p) / 0.6)}
OPTIMIZERS = ("sgd", "adam")


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float, nesterov: bool,
                   device: torch.device):
    """SGD (Nesterov momentum when `nesterov` and momentum > 0) or Adam, with torch's fused
    step where the device has one: for small networks the step dominates (0.82 → 0.45 s
    per epoch for an MLP on this CPU).

    Args: `name` ``"sgd"`` or ``"adam"``; `params` the parameters to train; `lr`, `momentum` (SGD only),
    `weight_decay` (L2, added to the gradient) and `nesterov` (SGD only) as in torch.optim; `device` the
    parameters' device (fused steps on ``cpu`` and ``cuda``).
    Returns: a torch.optim.SGD or torch.optim.Adam."""
    fused = device.type in ("cpu", "cuda")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0, fused=fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def _check_fit(train: TensorSet, test: TensorSet | None, epochs: int, lr: float, batch_size: int, optimizer: str,
               momentum: float, weight_decay: float, schedule, label_smoothing: float = 0.0,
               until_train_acc: float | None = None) -> None:
    """A clear error naming the argument, before any training."""
    for name, data in (("train", train), ("test", test)):
        if data is None:
            continue
        if not isinstance(data, TensorSet):
            raise TypeError(f"{name} must be a nblib TensorSet, not {type(data).__name__}")
        if len(data.x) != len(data.y):
            raise ValueError(f"{name} has {len(data.x)} inputs but {len(data.y)} labels")
        if data.y.dtype != torch.long and not data.y.is_floating_point():
            raise TypeError(f"{name} labels must be int64 class indices (classification) or floating-point "
                            f"targets (regression), not {data.y.dtype}")
    if len(train) == 0:
        raise ValueError("train is empty")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if test is not None and (test.y.dtype == torch.long) != (train.y.dtype == torch.long):
        raise TypeError(f"train labels are {train.y.dtype} but test labels are {test.y.dtype}: one task for both")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (math.isfinite(momentum) and 0 <= momentum < 1) or not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"momentum must be in [0, 1) and weight_decay >= 0, got {momentum} and {weight_decay}")
    if isinstance(schedule, str) and schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)} or a function p -> factor")
    if not isinstance(schedule, str) and not callable(schedule):
        raise TypeError(f"schedule must be one of {', '.join(SCHEDULES)} or a function p -> factor")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if until_train_acc is not None and not 0 < until_train_acc <= 1:
        raise ValueError(f"until_train_acc must be in (0, 1], got {until_train_acc}")
    if (label_smoothing or until_train_acc is not None) and train.y.dtype != torch.long:
        raise TypeError(f"label_smoothing and until_train_acc are for classification (int64 labels), "
                        f"got {train.y.dtype} labels")


class StackedMSE:
    """A `fit` objective for a `models.MLPStack` whose copies each fit their own regression
    target: the labels are N × copies, one column per copy. The summed loss adds the
    copies' squared errors, so each copy's gradient is that of its own mean squared error
    and, Adam being elementwise, each copy trains as it would alone on the same batches.
    `epoch_end` reports each copy's mean training loss of the epoch (``loss 0``, ...)."""

    def __init__(self, copies: int):
        self.copies = copies
        self._summed, self._seen = torch.zeros(copies), 0

    def __repr__(self) -> str:  # the cache keys on it
        return f"StackedMSE(copies={self.copies})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float):
        out = model(x).squeeze(2).T  # N × copies
        if out.shape != y.shape:
            raise ValueError(f"StackedMSE needs labels of shape N × copies = {tuple(out.shape)}, "
                             f"got {tuple(y.shape)}")
        per_copy = ((out - y) ** 2).sum(0)
        self._summed = self._summed.to(per_copy.device) + per_copy.detach()
        self._seen += len(y)
        return per_copy.sum(), out

    def epoch_end(self) -> dict[str, float]:
        means = (self._summed / self._seen).tolist()
        self._summed, self._seen = torch.zeros(self.copies), 0
        return {f"loss {i}": m for i, m in enumerate(means)}


def _why_not_finite(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> str:
    """The likeliest cause of a NaN or infinite loss, checked rather than assumed."""
    if not torch.isfinite(x).all():
        return "the training inputs contain NaN or infinite values"
    if y.is_floating_point() and not torch.isfinite(y).all():
        return "the regression targets contain NaN or infinite values"
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return f"the weights diverged: lower the learning rate (lr={lr})"
    return f"the loss overflowed although inputs and weights are finite: lower the learning rate (lr={lr})"


def fit(model: nn.Module, train: TensorSet, test: TensorSet | None = None, epochs: int = 10,
        lr: float = 0.1, batch_size: int = 128, optimizer: str = "sgd", momentum: float = 0.9,
        nesterov: bool = True, weight_decay: float = 0.0, schedule="cosine", label_smoothing: float = 0.0,
        until_train_acc: float | None = None, perturb=None, objective=None, watch=None,
        record_grad_norm: bool = False, device=None, desc: str = "", progress: bool = True) -> History:
    """Train `model` on `train` with mini-batch SGD (Nesterov momentum unless
    ``nesterov=False`` or ``momentum=0``) or Adam; evaluate on `test` each epoch.

    Args:
      `train`, `test`: TensorSets (`test` optional) with int64 labels (cross-entropy, accuracy) or float
      targets (squared error, accuracy NaN). `epochs` passes over `train`, each a new shuffle, in `batch_size`
      batches.
      `optimizer` ``"sgd"`` or ``"adam"``; `lr`, `momentum` and `nesterov` (SGD only), `weight_decay`.
      `schedule` scales the learning rate per step by a function of training progress
      p ∈ [0, 1]: ``"cosine"`` (decay to zero), ``"constant"``, ``"cyclic"`` (up, then down
      to zero: linear, peak at p = 0.4), or any callable p → factor.
      `label_smoothing` mixes the one-hot targets with the uniform distribution (Szegedy et al. 2016).
      `until_train_acc`: stop after the first epoch whose training accuracy (counted on the epoch's
      batches, as the network learns) reaches it; the schedule still runs over `epochs`, so the
      learning rate is that of a run that goes on.
      Two hooks change what a step does; give them a stable repr, since the cache keys on
      them. `perturb` maps each batch ``(model, x, y) -> x`` before the step (e.g.
      `nblib.attacks.AdversarialBatches`). `objective` replaces the loss:
      ``objective(model, x, y, p) -> (summed loss, outputs for accuracy)``; if it has an
      ``epoch_end()`` method, the dict it returns is appended to ``History.extra`` (e.g.
      `nblib.dann.DomainAdversarial`).
      Two more record without changing training: `watch`, a function ``model -> {name: value}``
      called (in eval mode) before the first epoch and after each (e.g. a snapshot of the weights),
      appends its values to ``History.extra`` (one more than the epochs); ``record_grad_norm=True``
      appends the gradient's L2 norm at every step to ``History.extra["grad norm"]``.
      `device` where to train (default: `pick_device()`); `desc` the progress bar's label (default: the
      model's class name); ``progress=False`` hides the bar.
    Returns: a `History`. The model is trained in place and left on `device`, in eval mode.
    Raises: on a bad argument, before training starts; FloatingPointError when the training loss
    becomes NaN or infinite, naming the epoch and the likely cause.
    """
    _check_fit(train, test, epochs, lr, batch_size, optimizer, momentum, weight_decay, schedule, label_smoothing,
               until_train_acc)
    device = torch.device(device) if device else pick_device()
    model.to(device)
    x, y = train.x.to(device), train.y.to(device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with channels_last(model, enabled=x.dim() == 4):
        history = _train(model, x, y, test, epochs, lr, batch_size, optimizer, momentum, nesterov, weight_decay,
                         schedule, label_smoothing, until_train_acc, perturb, objective, watch, record_grad_norm,
                         device, desc, progress)
    model.eval()
    return history


def _train(model, x, y, test, epochs, lr, batch_size, optimizer, momentum, nesterov, weight_decay, schedule,
           label_smoothing, until_train_acc, perturb, objective, watch, record_grad_norm, device, desc,
           progress) -> History:
    n = len(y)
    classify = y.dtype == torch.long
    steps = math.ceil(n / batch_size)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay, nesterov, device)
    factor = SCHEDULES[schedule] if isinstance(schedule, str) else schedule
    step, total_steps = 0, epochs * steps
    history = History()

    def record(values: dict) -> None:
        for key, value in values.items():
            history.extra.setdefault(key, []).append(value)

    if watch is not None:
        with eval_mode(model):
            record(watch(model))
    start = time.perf_counter()
    with progress_bar(epochs * steps, desc or type(model).__name__, progress) as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, device=device)
            xs, ys = x[order], y[order]
            total_loss = torch.zeros((), device=device)
            total_correct = torch.zeros((), device=device)
            grad_norms = []
            for i in range(0, n, batch_size):
                xb, yb = xs[i:i + batch_size], ys[i:i + batch_size]
                progress_now = step / total_steps
                for group in opt.param_groups:  # set directly: a LambdaLR step costs more than an MLP's update
                    group["lr"] = lr * factor(progress_now)
                if perturb is not None:
                    xb = perturb(model, xb, yb)
                if objective is None:
                    out = model(xb)
                    loss = _loss(out, yb, label_smoothing)
                else:
                    loss, out = objective(model, xb, yb, progress_now)
                opt.zero_grad(set_to_none=True)
                (loss / len(out)).backward()
                if record_grad_norm:  # kept on the device: no host sync per step
                    grads = [p.grad for p in model.parameters() if p.grad is not None]
                    grad_norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
                opt.step()
                step += 1
                total_loss += loss.detach()
                if classify:
                    total_correct += (out.detach().argmax(1) == yb).sum()
                bar.update()
            train_loss = total_loss.item() / n
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss became {train_loss} in epoch {epoch}: "
                                         f"{_why_not_finite(model, x, y, lr)}")
            history.train_loss.append(train_loss)
            history.train_acc.append(total_correct.item() / n if classify else math.nan)
            record(getattr(objective, "epoch_end", dict)())
            if grad_norms:
                history.extra.setdefault("grad norm", []).extend(torch.stack(grad_norms).tolist())
            if watch is not None:
                with eval_mode(model):
                    record(watch(model))
            if test is not None:
                test_loss, test_acc = evaluate(model, test)
                history.test_loss.append(test_loss)
                history.test_acc.append(test_acc)
            postfix = {"loss": f"{train_loss:.4g}"}
            if test is not None and not math.isnan(history.test_acc[-1]):
                postfix["test_acc"] = f"{history.test_acc[-1]:.3f}"
            bar.set_postfix(postfix, refresh=False)
            if until_train_acc is not None and history.train_acc[-1] >= until_train_acc:
                break
    history.seconds = time.perf_counter() - start
    history.samples_per_s = len(history.train_loss) * n / history.seconds
    return history
