"""Train-or-load: a trained model is stored under a hash of everything that made it.

The key covers the name, the hyper-parameters, the architecture (its repr) and its
starting weights (so fine-tuning a pruned copy is keyed by what it starts from), the
data's fingerprint, the profile and seed, and `CODE_VERSION` (bump it when training
changes meaning). Files are written to a temporary name and renamed, so an interrupted run never
leaves a half-written model; they are read with ``weights_only=True``; an unreadable file
is reported and the model retrained.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import config
from .data import TensorSet
from .train import History, fit

CODE_VERSION = 1


def fingerprint(value) -> str:
    """A content hash for what goes into a key: a model's weights, a tensor's values, a
    function's qualified name and code (so two lambdas differ), else the value's str
    (dataclasses, numbers, lists)."""
    if isinstance(value, nn.Module):
        value = torch.cat([t.detach().flatten().float().cpu() for t in value.state_dict().values()])
    if isinstance(value, torch.Tensor):
        return hashlib.sha1(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    if isinstance(value, functools.partial):
        return f"partial({fingerprint(value.func)}, {value.args!r}, {value.keywords!r})"
    if hasattr(value, "__code__"):  # a function or lambda: its name and code, not its address
        code = value.__code__
        body = hashlib.sha1(code.co_code + repr(code.co_consts).encode()).hexdigest()[:12]
        return f"{value.__module__}.{value.__qualname__}:{body}"
    return str(value)


def key(name: str, **parts) -> str:
    """A readable, content-addressed file stem: ``name-<sha1 of parts>``."""
    blob = json.dumps({"code": CODE_VERSION, **parts}, sort_keys=True, default=fingerprint)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def path_for(stem: str) -> Path:
    folder = config.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}.pt"


def save(path: Path, payload: dict) -> None:
    """Write atomically (`config.write_atomic`)."""
    config.write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load(path: Path) -> dict | None:
    """The stored payload, or None (with a warning) when the file is missing or unreadable."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        warnings.warn(f"cached model {path} is unreadable ({type(error).__name__}: {error}); retraining",
                      stacklevel=3)
        return None


def _seed_of(stem: str) -> int:
    return int(stem.rsplit("-", 1)[1], 16) % 2**31


def train_or_load(name: str, model: nn.Module, train_fn: Callable[[nn.Module], dict], **parts) -> dict:
    """Load `model`'s weights and the stored extras if cached, else run ``train_fn(model)``
    (which returns a dict of plain extras, e.g. a history) and store both.

    Training is seeded from the key, and the random state afterwards is the same whether
    the model was trained or loaded, so a warm re-run builds the same later models.
    """
    stem = key(name, model=repr(model), start=fingerprint(model), **parts)
    path = path_for(stem)
    seed = _seed_of(stem)
    cached = load(path)
    if cached is not None:
        model.load_state_dict(cached["state"])
        model.to(config.pick_device()).eval()
        extras = cached["extras"]
    else:
        config.seed_everything(seed)
        extras = train_fn(model)
        save(path, {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extras": extras})
    config.seed_everything(seed + 1)
    return extras


def _encode(value):
    """Make a result loadable with ``weights_only=True``: DataFrames become tagged dicts."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return {"__frame__": value.to_dict(orient="tight")}
    if isinstance(value, (list, tuple)):
        return type(value)(_encode(v) for v in value)
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value):
    import pandas as pd

    if isinstance(value, dict) and "__frame__" in value:
        return pd.DataFrame.from_dict(value["__frame__"], orient="tight")
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v) for v in value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def memo(name: str, compute: Callable[[], object], **parts):
    """``compute()``, or its stored result when called before with the same parts (models
    and tensors among them are keyed by content). For experiments that are slow but are
    not training, e.g. an attack sweep. The result may hold DataFrames, tensors, numbers
    and strings, in dicts, lists and tuples. Seeded like `train_or_load`."""
    stem = key(name, **parts)
    path = path_for(stem)
    cached = load(path)
    if cached is not None:
        value = _decode(cached["value"])
    else:
        config.seed_everything(_seed_of(stem))
        value = compute()
        save(path, {"value": _encode(value)})
    config.seed_everything(_seed_of(stem) + 1)
    return value


def fit_cached(name: str, model: nn.Module, train: TensorSet, test: TensorSet | None = None,
               **fit_kwargs) -> History:
    """`nblib.train.fit`, through the cache: the second call with the same model, data and
    settings loads the weights and history instead of training."""
    run = config.current()
    extras = train_or_load(
        name, model, lambda m: fit(m, train, test, desc=name, **fit_kwargs).to_dict(),
        train=train.id, test=test.id if test is not None else None,
        fit={k: v for k, v in fit_kwargs.items() if k != "progress"},
        profile=run.profile, seed=run.seed)
    return History.from_dict(extras)
