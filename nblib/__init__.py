"""nblib: the helpers behind the Deep Learning Phenomena chapters.

A chapter starts with ``cfg = nblib.setup(chapter, profile, seed)`` and ends with
``nblib.claim(...)``; everything in between that is not the point of the chapter lives in
the topic modules: config, data, models, train, cache, claims, plots.
"""

from . import claims, plots  # plots sets the book's figure style
from .cache import fit_cached, memo, train_or_load
from .claims import claim
from .config import PROFILES, interactive, pick_device, seed_everything, setup
from .data import TensorSet, load
from .models import ResNet, cnn, count_params, match_params, mlp
from .train import History, evaluate, fit, predict

__version__ = "0.1.0"
__all__ = [
    "PROFILES", "History", "ResNet", "TensorSet", "claim", "claims", "cnn", "count_params", "evaluate", "fit",
    "fit_cached", "interactive", "load", "match_params", "memo", "mlp", "pick_device", "plots", "predict",
    "seed_everything", "setup", "train_or_load",
]
