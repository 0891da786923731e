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
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    extra: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(**d)


def progress_bar(total: int, desc: str = "", enabled: bool = True):
    """tqdm: a widget in JupyterLab, plain text (updated every few seconds) when
    ``$NBLIB_BATCH=1`` (set by ``nblib run``, so executed notebooks stay small)."""
    if not interactive():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, disable=not enabled, mininterval=10, ascii=True)
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled)


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="sum") if y.dtype == torch.long else \
        F.mse_loss(out, y, reduction="sum")


@contextmanager
def eval_mode(model: nn.Module):
    """Run the block with `model` in eval mode; restore its mode afterwards, even on error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, forward=None) -> torch.Tensor:
    """The model's outputs for `x` (or those of `forward`, e.g. ``model.features``),
    computed in eval mode in batches on the model's device (mode restored)."""
    device = next(model.parameters()).device
    forward = forward or model
    with eval_mode(model):
        return torch.cat([forward(x[i:i + batch_size].to(device)) for i in range(0, max(len(x), 1), batch_size)])


def evaluate(model: nn.Module, data: TensorSet, batch_size: int = 1024) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `data`; accuracy is NaN for regression."""
    out = predict(model, data.x, batch_size)
    y = data.y.to(out.device)
    accuracy = (out.argmax(1) == y).float().mean().item() if y.dtype == torch.long else math.nan
    return _loss(out, y).item() / len(y), accuracy


SCHEDULES = {"cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)), "constant": lambda p: 1.0}


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")


def fit(model: nn.Module, train: TensorSet, test: TensorSet | None = None, epochs: int = 10,
        lr: float = 0.1, batch_size: int = 128, optimizer: str = "sgd", momentum: float = 0.9,
        weight_decay: float = 0.0, schedule="cosine", perturb=None, objective=None, device=None,
        desc: str = "", progress: bool = True) -> History:
    """Train `model` on `train` with mini-batch SGD or Adam; evaluate on `test` each epoch.

    `schedule` scales the learning rate per step by a function of training progress
    p ∈ [0, 1]: ``"cosine"`` (decay to zero), ``"constant"``, or any callable p → factor.
    Two hooks change what a step does; give them a stable repr, since the cache keys on
    them. `perturb` maps each batch ``(model, x, y) -> x`` before the step (e.g.
    `nblib.attacks.AdversarialBatches`). `objective` replaces the loss:
    ``objective(model, x, y, p) -> (summed loss, outputs for accuracy)``; if it has an
    ``epoch_end()`` method, the dict it returns is appended to ``History.extra`` (e.g.
    `nblib.dann.DomainAdversarial`). A NaN or infinite training loss stops with a
    FloatingPointError naming the epoch. The model is left on `device` (default:
    `pick_device()`), in eval mode.
    """
    device = torch.device(device) if device else pick_device()
    model.to(device)
    x, y = train.x.to(device), train.y.to(device)
    if x.dim() == 4:  # channels-last convolutions and pooling are ~20% faster on CPU
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    n = len(y)
    classify = y.dtype == torch.long
    steps = math.ceil(n / batch_size)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    factor = SCHEDULES[schedule] if isinstance(schedule, str) else schedule
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: factor(step / (epochs * steps)))
    history = History()
    start = time.perf_counter()
    with progress_bar(epochs * steps, desc or type(model).__name__, progress) as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, device=device)
            xs, ys = x[order], y[order]
            total_loss = torch.zeros((), device=device)
            total_correct = torch.zeros((), device=device)
            for i in range(0, n, batch_size):
                xb, yb = xs[i:i + batch_size], ys[i:i + batch_size]
                if perturb is not None:
                    xb = perturb(model, xb, yb)
                if objective is None:
                    out = model(xb)
                    loss = _loss(out, yb)
                else:
                    loss, out = objective(model, xb, yb, sched.last_epoch / (epochs * steps))
                opt.zero_grad(set_to_none=True)
                (loss / len(out)).backward()
                opt.step()
                sched.step()
                total_loss += loss.detach()
                if classify:
                    total_correct += (out.detach().argmax(1) == yb).sum()
                bar.update()
            train_loss = total_loss.item() / n
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss became {train_loss} in epoch {epoch} "
                                         f"(lr={lr}); lower the learning rate")
            history.train_loss.append(train_loss)
            history.train_acc.append(total_correct.item() / n if classify else math.nan)
            for key, value in (getattr(objective, "epoch_end", dict)()).items():
                history.extra.setdefault(key, []).append(value)
            if test is not None:
                test_loss, test_acc = evaluate(model, test)
                history.test_loss.append(test_loss)
                history.test_acc.append(test_acc)
            postfix = {"loss": f"{train_loss:.4g}"}
            if test is not None and not math.isnan(history.test_acc[-1]):
                postfix["test_acc"] = f"{history.test_acc[-1]:.3f}"
            bar.set_postfix(postfix, refresh=False)
    history.seconds = time.perf_counter() - start
    history.samples_per_s = epochs * n / history.seconds
    model.to(memory_format=torch.contiguous_format)  # hand back ordinary tensors (pruning views them flat)
    model.eval()
    return history
