"""Train-or-load: a trained model is stored under a hash of everything that made it.

The key covers the name, the hyper-parameters, the architecture (its repr) and its
starting weights (so fine-tuning a pruned copy is keyed by what it starts from), the
data's fingerprint, the profile and seed, and `CODE_VERSION` (bump it when training
changes meaning). Files are written to a temporary name and renamed, so an interrupted run never
leaves a half-written model; they are read with ``weights_only=True``; an unreadable file
is reported and the model retrained.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import json
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import config
from .data import TensorSet, content_hash
from .models import MLPStack
from .train import History, StackedMSE, fit

CODE_VERSION = 2  # 2: fused optimizer steps, DANN domains through batch norm separately


def _stable_repr(value) -> str:
    """repr, except for sets (their order changes with PYTHONHASHSEED): members sorted."""
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({sorted(map(_stable_repr, value))})"
    if isinstance(value, tuple):
        return f"({', '.join(map(_stable_repr, value))},)"
    return repr(value)


def _code_hash(code: types.CodeType) -> str:
    """Bytecode, names and constants; nested code objects (comprehensions, inner
    functions) by their own hash, never by their repr, which holds a memory address."""
    consts = [_code_hash(c) if isinstance(c, types.CodeType) else _stable_repr(c) for c in code.co_consts]
    return hashlib.sha1(code.co_code + repr((consts, code.co_names)).encode()).hexdigest()[:12]


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _function_hash(f: types.FunctionType, seen: frozenset = frozenset()) -> str:
    """What a function computes: its code, its default arguments, the values it closes
    over, and the functions of its own module it calls (a notebook's helpers), each by
    content. Functions of other modules are covered by their code version (`CODE_VERSION`)."""
    seen = seen | {id(f)}
    helpers = {name: _function_hash(g, seen) for name in sorted(_global_names(f.__code__))
               if isinstance(g := f.__globals__.get(name), types.FunctionType)
               and g.__module__ == f.__module__ and id(g) not in seen}
    cells = [fingerprint(c.cell_contents) for c in f.__closure__ or () if c.cell_contents is not f]
    parts = [_code_hash(f.__code__), [fingerprint(d) for d in f.__defaults__ or ()],
             {k: fingerprint(v) for k, v in (f.__kwdefaults__ or {}).items()}, cells, helpers]
    return f"{f.__module__}.{f.__qualname__}:{hashlib.sha1(repr(parts).encode()).hexdigest()[:12]}"


def fingerprint(value) -> str:
    """A content hash for what goes into a key: a model's parameter names, shapes, dtypes
    and values; a tensor's or an array's; a random generator's state; a data set's content
    id; a function's code, defaults, closure and helpers (so two schedules from one factory
    differ); else the value's repr, which must not be an address (TypeError: give the
    object a repr that says what it is).

    Args: `value` a part of a key, lists, tuples, dicts and sets of them included.
    Returns: a str that changes when the content does."""
    if isinstance(value, nn.Module):
        return hashlib.sha1(repr([(name, content_hash(t)) for name, t in value.state_dict().items()])
                            .encode()).hexdigest()[:16]
    if isinstance(value, torch.Tensor):
        return content_hash(value)
    if isinstance(value, np.ndarray):  # its repr elides the middle of a large array
        return content_hash(torch.from_numpy(np.ascontiguousarray(value)))
    if isinstance(value, torch.Generator):  # what it will draw next
        return f"Generator({value.device}, state {content_hash(value.get_state())})"
    if isinstance(value, TensorSet):
        return value.id
    if isinstance(value, functools.partial):
        return (f"partial({fingerprint(value.func)}, {[fingerprint(a) for a in value.args]}, "
                f"{ {k: fingerprint(v) for k, v in value.keywords.items()} })")
    if isinstance(value, types.FunctionType):
        return _function_hash(value)
    if isinstance(value, (list, tuple)):
        return repr([fingerprint(v) for v in value])
    if isinstance(value, dict):
        return repr({str(k): fingerprint(v) for k, v in value.items()})
    if isinstance(value, (set, frozenset)):
        return repr(sorted(fingerprint(v) for v in value))
    text = repr(value)
    if " at 0x" in text:
        raise TypeError(f"cannot make a cache key from {text}: its repr is a memory address; "
                        "give it a __repr__ that says what it is")
    return text


def _loaded_globals(code: types.CodeType) -> set[str]:
    """The global names `code` (and the code nested in it) loads: not attribute names, which
    share ``co_names`` with them (``test.x`` reads ``test``, not a global ``x``)."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _loaded_globals(const)
    return names


def _members(value) -> list:
    """`value` and, inside dicts, lists and tuples, every value it holds."""
    if isinstance(value, dict):
        return [value, *(m for v in value.values() for m in _members(v))]
    if isinstance(value, (list, tuple)):
        return [value, *(m for v in value for m in _members(v))]
    return [value]


def _globals_read(f, seen: set[int]) -> dict[str, object]:
    """The module-level values (not functions, classes or modules) that `f`, or a helper of
    its own module it calls, reads: a notebook's ``SCALE`` or ``S``. nblib's own functions
    are covered by `CODE_VERSION`."""
    if isinstance(f, functools.partial):
        return _globals_read(f.func, seen)
    if not isinstance(f, types.FunctionType) or id(f) in seen or f.__module__.startswith(__package__ or "nblib"):
        return {}
    seen.add(id(f))
    read = {}
    for name in sorted(_loaded_globals(f.__code__)):
        if name not in f.__globals__:
            continue
        value = f.__globals__[name]
        if isinstance(value, types.FunctionType) and value.__module__ == f.__module__:
            read |= _globals_read(value, seen)
        elif not isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type)):
            read[name] = value
    return read


def _unkeyed_reads(parts: dict) -> dict[str, str]:
    """The globals read by the functions among `parts`, at any depth (a schedule inside
    `fit_cached`'s settings; see `_globals_read`), that are not themselves among the parts,
    fingerprinted: editing ``SCALE`` in a notebook changes the key of every computation
    whose code reads it, and a model passed as a part is not hashed twice."""
    members = [m for part in parts.values() for m in _members(part)]
    given = {id(m) for m in members}
    seen: set[int] = set()
    read = {}
    for member in members:
        read |= _globals_read(member, seen)
    keyed = {}
    for name, value in read.items():
        if id(value) in given:
            continue
        try:
            keyed[name] = fingerprint(value)
        except TypeError as error:
            raise TypeError(f"the computation reads the global {name!r}, which cannot be keyed ({error}); "
                            f"pass it to the function, or as a part of the key") from None
    return keyed


def key(name: str, **parts) -> str:
    """A readable, content-addressed file stem: ``name-<sha1 of name and parts>``, the parts
    including the globals their functions read (`_unkeyed_reads`).

    Args: `name` the readable prefix; `parts` what the result depends on, each by `fingerprint`.
    Returns: the stem, a str (``name-`` and 16 hex digits)."""
    return _stem(name, parts, _unkeyed_reads(parts))


def _stem(name: str, parts: dict, reads: dict) -> str:
    blob = json.dumps({"code": CODE_VERSION, "name": name, **parts, **({"reads": reads} if reads else {})},
                      sort_keys=True, default=fingerprint)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def _stem_and_seed(name: str, **parts) -> tuple[str, int]:
    """The file stem (`key`) and the seed of the work stored under it: a hash of the name and
    the parts given, so two names with the same parts train with different seeds. The seed
    leaves out the globals the work reads: a value passed as a part, or read as a global,
    draws the same random numbers."""
    reads, plain = _unkeyed_reads(parts), _stem(name, parts, {})
    return (_stem(name, parts, reads) if reads else plain), _seed_of(plain)


def path_for(stem: str) -> Path:
    """The file of a stem: ``<cache dir>/models/<stem>.pt``, the folder created if missing.

    Args: `stem` from `key`.
    Returns: a Path (the file may not exist)."""
    folder = config.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}.pt"


def save(path: Path, payload: dict) -> None:
    """Write atomically (`config.write_atomic`).

    Args: `path` the file; `payload` a dict that ``torch.load(weights_only=True)`` can read back
    (tensors, numbers, strings, lists, dicts)."""
    config.write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load(path: Path) -> dict | None:
    """The stored payload, or None (with a warning) when the file is missing or unreadable.

    Args: `path` a cache file.
    Returns: the payload dict, its tensors on the CPU, or None."""
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


def _fits(model: nn.Module, cached: dict, path: Path) -> bool:
    """Whether a stored payload holds weights of exactly `model`'s names, shapes and dtypes
    (checked before loading, so a mismatch leaves the model untouched)."""
    state = cached.get("state")
    wanted = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    stored = {k: (tuple(v.shape), v.dtype) for k, v in state.items()} if isinstance(state, dict) else None
    if stored == wanted and "extras" in cached:
        return True
    warnings.warn(f"cached model {path} does not match this model (other parameters or shapes, or missing "
                  "parts); retraining", stacklevel=3)
    return False


def train_or_load(name: str, model: nn.Module, train_fn: Callable[[nn.Module], dict], device=None,
                  **parts) -> dict:
    """Load `model`'s weights and the stored extras if cached, else run ``train_fn(model)``
    (which returns a dict of plain extras, e.g. a history) and store both. Either way the
    model ends on `device` (default `pick_device()`) in eval mode.

    Training is seeded from the key, and the random state afterwards is the same whether
    the model was trained or loaded, so a warm re-run builds the same later models.

    Args: `name` a readable prefix of the file; `model` the module to train or fill (its repr and
    starting weights are part of the key); `train_fn` trains it in place; `device` where it ends
    (default: `pick_device()`); `parts` whatever else the training depends on (settings, data ids),
    keyed by `fingerprint`.
    Returns: the extras, as `train_fn` returned them or as stored (tensors then on the CPU).
    """
    stem, seed = _stem_and_seed(name, model=repr(model), start=fingerprint(model), **parts)
    path = path_for(stem)
    cached = load(path)
    if cached is not None and _fits(model, cached, path):
        model.load_state_dict(cached["state"])
        extras = cached["extras"]
    else:
        config.seed_everything(seed)
        extras = train_fn(model)
        save(path, {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extras": extras})
    model.to(config.pick_device(device)).eval()
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
    not training, e.g. an attack sweep. The key covers `compute` itself (its code, defaults,
    closure, the notebook helpers it calls and the notebook globals they read), so editing
    the computation, or a value it reads, recomputes it. The result may hold DataFrames,
    tensors, numbers and strings, in dicts, lists and tuples. Seeded like `train_or_load`.

    Args: `name` a readable prefix of the file; `compute` a function of no arguments;
    `parts` whatever else the result depends on (models, tensors, settings).
    Returns: ``compute()``'s result, or the stored one (its tensors then on the CPU).
    Example: ``sweep = memo("07-sweep", lambda: attack_sweep(net, x), model=net, x=x)``."""
    stem, seed = _stem_and_seed(name, compute=compute, **parts)
    path = path_for(stem)
    cached = load(path)
    if cached is not None and "value" not in cached:
        warnings.warn(f"cached result {path} holds no value; recomputing", stacklevel=2)
        cached = None
    if cached is not None:
        value = _decode(cached["value"])
    else:
        config.seed_everything(seed)
        value = compute()
        save(path, {"value": _encode(value)})
    config.seed_everything(seed + 1)
    return value


def fit_cached(name: str, model: nn.Module, train: TensorSet, test: TensorSet | None = None,
               **fit_kwargs) -> History:
    """`nblib.train.fit`, through the cache: the second call with the same model, data and
    settings loads the weights and history instead of training.

    Args: `name` a readable prefix of the file (also the progress bar's label); `model`, `train`,
    `test` and `fit_kwargs` as in `fit` (all but ``progress`` part of the key).
    Returns: the `History`; `model` holds the trained weights, on ``device`` (default: `pick_device()`),
    in eval mode.
    Example: ``history = fit_cached("07-cnn-seed0", net, train, test, epochs=5, lr=0.05)``."""
    run = config.current()
    extras = train_or_load(
        name, model, lambda m: fit(m, train, test, desc=name, **fit_kwargs).to_dict(), device=fit_kwargs.get("device"),
        train=train.id, test=test.id if test is not None else None,
        fit={k: v for k, v in fit_kwargs.items() if k != "progress"},
        profile=run.profile, seed=run.seed)
    return History.from_dict(extras)


def fit_together(name: str, nets: list[nn.Sequential], datasets: list[TensorSet], **fit_kwargs) -> list[History]:
    """`fit_cached` for several `nblib.mlp` regression networks of one shape at once, net i
    on ``datasets[i]`` (all on the same inputs): trained as one `models.MLPStack` with the
    same batches for all (3 to 13 times faster than one by one for the small MLPs of chapter
    01). The trained weights are copied back into `nets`.

    Args: `name` as in `fit_cached`; `nets` `nblib.mlp` networks of one shape, trained in place;
    `datasets` one TensorSet per net, all with the same x and an N × 1 float y; `fit_kwargs` as in
    `fit` (no test set).
    Returns: one `History` per net, holding only its `train_loss` and the joint run's `seconds`."""
    if len(nets) != len(datasets) or not nets:
        raise ValueError(f"fit_together needs one data set per network, got {len(nets)} networks and "
                         f"{len(datasets)} data sets")
    if any(not torch.equal(d.x, datasets[0].x) for d in datasets):
        raise ValueError("fit_together trains the networks on shared inputs: every data set needs the same x")
    if any(d.y.shape != (len(d.x), 1) for d in datasets):
        raise ValueError("fit_together fits one regression target per network: every y must be N × 1")
    joined = TensorSet(datasets[0].x, torch.cat([d.y for d in datasets], dim=1), [],
                       "+".join(d.name for d in datasets), "; ".join(d.source for d in datasets))
    stack = MLPStack(nets)
    history = fit_cached(name, stack, joined, objective=StackedMSE(len(nets)), **fit_kwargs)
    for net, trained in zip(nets, stack.unstack(), strict=True):
        net.load_state_dict(trained.state_dict())
        net.to(next(stack.parameters()).device).eval()
    return [History(train_loss=history.extra[f"loss {i}"], seconds=history.seconds) for i in range(len(nets))]
