"""nblib: the helpers behind the Deep Learning Phenomena chapters.

A chapter starts with ``cfg = nblib.setup(chapter, profile, seed)`` and ends with
``nblib.claim(...)``; everything in between that is not the point of the chapter lives in
the topic modules: config, data, models, train, cache, claims, plots, prose, metrics,
landscape, attacks, dann, depth, gan, pretrained, pruning, saliency, scratch, style, transfer (and
pagecheck, runner and ledger, for the book). Modules load on first use, so the ``nblib`` command starts without torch.
"""

import importlib

from . import config
from .config import PROFILES, interactive, pick_device, seed_everything

__version__ = "0.1.0"

_MODULES = {"attacks", "cache", "claims", "config", "dann", "data", "depth", "gan", "landscape", "ledger", "metrics",
            "models", "pagecheck", "plots", "pretrained", "prose", "pruning", "runner", "saliency", "scratch", "style",
            "train", "transfer"}
_NAMES = {
    "fit_cached": "cache", "fit_together": "cache", "memo": "cache", "train_or_load": "cache", "claim": "claims",
    "TensorSet": "data", "load": "data", "ResNet": "models", "cnn": "models", "count_params": "models",
    "match_params": "models", "mlp": "models", "History": "train", "evaluate": "train", "fit": "train",
    "predict": "train",
}
__all__ = ["PROFILES", "interactive", "pick_device", "seed_everything", "setup", *sorted(_NAMES)]


def setup(chapter: str, profile: str = "quick", seed: int = 0, device: str | None = None) -> config.Setup:
    """`nblib.config.setup` (profile, device, seeds, one line printed), then the book's figure
    style (`nblib.style.book_style`): a chapter's first call."""
    run = config.setup(chapter, profile, seed, device)
    importlib.import_module(".style", __name__).book_style()
    return run


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'nblib' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODULES, *_NAMES])
