"""How right, and how sure: accuracy, calibration and the separation of feature clusters.

Calibration follows Guo et al. 2017 ("On Calibration of Modern Neural Networks"): a
classifier's confidence is its largest softmax probability; the reliability table bins
the predictions by confidence into equal-width bins (lo, hi]; the expected calibration
error (ECE) is the gap between accuracy and mean confidence in each bin, weighted by the
bin's share of the samples. Temperature scaling divides the logits by one number T,
fitted by minimising the negative log-likelihood on held-out data; the arg max, and so
the accuracy, does not change. All functions take logits (N × classes) and int64 labels
(N) on any device.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F


def _check(logits: torch.Tensor, y: torch.Tensor) -> None:
    if logits.dim() != 2 or len(logits) == 0:
        raise ValueError(f"logits must be N × classes with N ≥ 1, got shape {tuple(logits.shape)}")
    if y.dtype != torch.long:
        raise TypeError(f"labels must be int64 class indices, not {y.dtype}")
    if y.shape != (len(logits),):
        raise ValueError(f"labels must be {len(logits)} class indices, got shape {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}]")
    if not torch.isfinite(logits).all():
        raise ValueError(f"logits hold {(~torch.isfinite(logits)).sum().item()} NaN or infinite values: "
                         "the model diverged, or its inputs did")


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The share of samples whose largest logit is the label's.

    Args: `logits` N × classes, finite; `y` int64 labels (N,), any device.
    Returns: a float in [0, 1]."""
    _check(logits, y)
    return (logits.argmax(1) == y.to(logits.device)).float().mean().item()


def nll(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood of the labels (cross-entropy, computed in float32).

    Args: `logits` N × classes, finite; `y` int64 labels (N,).
    Returns: a float."""
    _check(logits, y)
    return F.cross_entropy(logits.float(), y.to(logits.device)).item()


def reliability_table(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> pd.DataFrame:
    """Per confidence bin (lo, hi]: its bounds, the number of samples, their mean
    confidence and their accuracy (NaN for empty bins).

    Args: `logits` N × classes, finite; `y` int64 labels (N,); `bins` ≥ 1 equal-width bins on [0, 1].
    Returns: a DataFrame, one row per bin: ``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``."""
    _check(logits, y)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence, predicted = logits.float().softmax(1).max(1)
    correct = (predicted == y.to(logits.device)).float()
    edges = torch.linspace(0, 1, bins + 1, device=logits.device)
    which = torch.bucketize(confidence, edges[1:-1])  # bin i holds (edges[i], edges[i + 1]]
    count = torch.zeros(bins, device=logits.device).index_add_(0, which, torch.ones_like(confidence))
    confidence_sum = torch.zeros(bins, device=logits.device).index_add_(0, which, confidence)
    correct_sum = torch.zeros(bins, device=logits.device).index_add_(0, which, correct)
    return pd.DataFrame({"lower": edges[:-1].tolist(), "upper": edges[1:].tolist(), "count": count.long().tolist(),
                         "confidence": (confidence_sum / count).tolist(), "accuracy": (correct_sum / count).tolist()})


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """ECE = Σ_bins (n_b / N) · |accuracy_b − confidence_b|, equal-width bins (Guo et al. use 15).

    Args: as `reliability_table`.
    Returns: a float in [0, 1]."""
    table = reliability_table(logits, y, bins)
    filled = table[table["count"] > 0]
    return float((filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / len(y))


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) on (logits, y),
    found by L-BFGS on log T (so T stays positive). Fit it on held-out data, never on the
    test set.

    Args: `logits` N × classes, finite; `y` int64 labels (N,); `max_iter` L-BFGS iterations.
    Returns: T, a float: the calibrated logits are ``logits / T``."""
    _check(logits, y)
    logits, y = logits.detach().float(), y.to(logits.device)
    log_t = torch.zeros((), device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return log_t.exp().item()


def class_separation(features: torch.Tensor, y: torch.Tensor, sample: int = 2000, seed: int = 0) -> float:
    """Mean silhouette of the samples' feature vectors grouped by label (scikit-learn,
    Euclidean): 1 for tight, far-apart clusters, 0 for overlapping ones. On at most
    `sample` samples, drawn with `seed` (the score costs O(N²)).

    Args: `features` N × D, any device (detached); `y` labels (N,), at least two classes among them.
    Returns: a float in [−1, 1]."""
    from sklearn.metrics import silhouette_score

    if features.dim() != 2 or len(features) != len(y):
        raise ValueError(f"features must be N × D with one label each, got {tuple(features.shape)} "
                         f"and {len(y)} labels")
    return float(silhouette_score(features.detach().cpu().numpy(), y.cpu().numpy(),
                                  sample_size=min(sample, len(y)), random_state=seed))


def over_seeds(runs: pd.DataFrame, by: str, columns: str | list[str] | None = None,
               stats: tuple[str, ...] = ("mean", "min", "max")) -> pd.DataFrame:
    """One row per value of `by` (in order of appearance): `stats` of each of `columns`
    (default: every column but `by` and ``seed``) over the runs, one per seed. A single
    column name gives the stats as columns; a list gives (column, stat) columns.

    Args: `runs` one row per run; `by` the column to group by; `columns` one name or a list;
    `stats` pandas aggregation names.
    Returns: a DataFrame indexed by the values of `by`.
    Example: ``over_seeds(runs, "model", ["test accuracy"])``."""
    if by not in runs.columns:
        raise ValueError(f"no column {by!r} to group by; the runs have {', '.join(map(str, runs.columns))}")
    if columns is None:
        columns = [c for c in runs.columns if c not in (by, "seed")]
    return runs.groupby(by, sort=False)[columns].agg(list(stats))
