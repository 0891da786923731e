"""Figures the chapters share: training curves, image rows and grids, fitted functions,
sweeps, reliability diagrams and feature embeddings."""

from __future__ import annotations

import warnings

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

from .train import History


def curves(histories: dict[str, History], metrics=("train_loss", "test_acc"), logy=("train_loss",),
           axes=None):
    """One panel per metric, one line per named History, against epoch."""
    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
        axes = axes[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for label, h in histories.items():
            values = getattr(h, metric)
            ax.plot(np.arange(1, len(values) + 1), values, label=label)
        ax.set(xlabel="epoch", ylabel=metric.replace("_", " "), yscale="log" if metric in logy else "linear")
    axes[0].legend()
    plt.tight_layout()
    return axes


def function_fits(x: torch.Tensor, target: torch.Tensor, fits: dict[str, torch.Tensor], ax=None, title="",
                  colours: dict[str, str] | None = None):
    """The target function and each model's fit of it, on the same axes (a fit's colour from
    `colours` where it names one, so that a model keeps its colour across figures); the
    legend beside the axes, off the curves."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    ax.plot(x.flatten().cpu(), target.flatten().cpu(), color="black", lw=3, alpha=0.35, label="target")
    for label, y in fits.items():
        ax.plot(x.flatten().cpu(), y.flatten().cpu(), lw=1.4, label=label, color=(colours or {}).get(label))
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.02, 1))
    return ax


def sweep(x, series: dict[str, list[float]], xlabel: str, ylabel: str, ax=None, logx=True, logy=False):
    """Lines of several measured series against one swept quantity (e.g. parameter count)."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    for label, ys in series.items():
        ax.plot(x, ys, marker="o", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear", yscale="log" if logy else "linear")
    ax.legend()
    return ax


def image_rows(rows: dict[str, torch.Tensor], titles: dict[str, list[str]] | None = None,
               diverging: tuple[str, ...] = (), size: float = 1.5):
    """One row per named batch of images (N×C×H×W), the row name on the left. Rows named
    in `diverging` (e.g. perturbations) are drawn with a red–blue map centred on zero, on
    one scale per row, shown by a colour bar at its end. Titles and names are set large
    enough to read when a row of eight is shrunk to the page's width."""
    n = max(len(x) for x in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(n * size, len(rows) * size * 1.25), squeeze=False,
                             layout="constrained")  # room for the colour bars
    for r, (name, images) in enumerate(rows.items()):
        images = images.detach().cpu()
        scale = float(images.abs().max()) or 1.0
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            img = images[c]
            if name in diverging:
                shown = ax.imshow(img.mean(0).numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale)
            else:
                ax.imshow((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy(), cmap="gray", vmin=0, vmax=1)
            if titles and name in titles:
                ax.set_title(titles[name][c], fontsize=11)
        axes[r, 0].set_ylabel(name, fontsize=12)
        if name in diverging:
            bar = fig.colorbar(shown, ax=axes[r, :len(images)].tolist(), shrink=0.9, pad=0.01)
            bar.ax.tick_params(labelsize=10)
    return fig


def image_grid(images: torch.Tensor, nrow: int, ax=None, title: str = "", pad: int = 2):
    """A batch of grey images (N×1×H×W, floats in [0, 1] or uint8) tiled `nrow` to a row on
    one axis, white between tiles: many small images (a generator's samples) at a glance."""
    images = images.detach().cpu()
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    n, _, h, w = images.shape
    rows = -(-n // nrow)
    canvas = torch.ones(rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img[0]
    ax = ax or plt.subplots(figsize=(nrow * 0.5, rows * 0.5))[1]
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[], title=title)
    ax.grid(False)
    return ax


def clipped_map(heat: torch.Tensor, quantile: float = 0.99) -> torch.Tensor:
    """A saliency map scaled to [0, 1] by its `quantile`, brighter pixels clipped: how the
    SmoothGrad authors' saliency library shows maps (scaled to the maximum, a few extreme
    pixels leave the rest dark). Same shape as `heat`."""
    top = heat.flatten().float().quantile(quantile).clamp_min(1e-12)
    return (heat / top).clamp(0, 1)


def reliability_diagram(table, ax=None, label: str = "", bar_color=None):
    """Accuracy against mean confidence per bin of a `metrics.reliability_table`, as bars
    over the bins; the diagonal is perfect calibration. Bars below it: overconfident. A
    dotted line gives the share of the images in each bin, so that a bar standing on a
    handful of images is seen as such."""
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    filled = table[table["count"] > 0]
    ax.bar(filled["lower"], filled["accuracy"], width=filled["upper"] - filled["lower"], align="edge",
           edgecolor="black", linewidth=0.5, color=bar_color, alpha=0.8, label=label or None)
    ax.stairs(table["count"] / table["count"].sum(), [*table["lower"], table["upper"].iloc[-1]], color="black",
              ls=":", lw=1.2)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", aspect="equal")
    return ax


def umap_points(features: torch.Tensor, seed: int, n_neighbors: int = 15, n_epochs: int = 200) -> torch.Tensor:
    """UMAP of `features` into the plane (McInnes et al. 2018), seeded and single-threaded
    (so repeatable), from exact nearest neighbours.

    Below 4,096 points umap-learn finds the exact neighbours itself, from all pairwise distances
    computed with its numba metric: 5–6 s for 2,000 points of 512 numbers here, and a numba
    compilation in every new process. scikit-learn's exact neighbours (in float64) give the
    same graph but for ties, in a fraction of a second.

    Args: `features` N × D, N > `n_neighbors`; `seed` UMAP's random state; `n_neighbors` how
    local the picture is; `n_epochs` passes of the layout (umap-learn's default above 10,000
    points; 500 below).
    Returns: N × 2 float32 points, on the CPU."""
    import umap  # 2–3 s to import, for the one chapter that draws it
    from sklearn.neighbors import NearestNeighbors

    if features.dim() != 2 or len(features) <= n_neighbors:
        raise ValueError(f"umap_points needs N × D features with N > n_neighbors = {n_neighbors}, "
                         f"got {tuple(features.shape)}")
    x = features.detach().cpu().double().numpy()
    distances, neighbours = NearestNeighbors(n_neighbors=n_neighbors).fit(x).kneighbors(x)
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():  # it warns that the fit cannot `transform` new points
            warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
            layout = umap.UMAP(n_neighbors=n_neighbors, n_epochs=n_epochs, random_state=seed, n_jobs=1,
                               precomputed_knn=(neighbours, distances.astype(np.float32), None))
            points = layout.fit_transform(x.astype(np.float32))
    finally:
        # numba's OpenMP layer shares torch's OpenMP runtime and leaves it at every core: with
        # chapters side by side (one thread each), 04's next training, 33 s alone, had not
        # finished after 8 minutes
        torch.set_num_threads(threads)
    return torch.from_numpy(points).float()


def embedding_scatter(points: torch.Tensor, y: torch.Tensor, classes: list[str], ax=None, title: str = "",
                      legend: bool = True):
    """2-D points (e.g. a PCA or UMAP of features) coloured by class."""
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    points, y = torch.as_tensor(points).cpu(), torch.as_tensor(y).cpu()
    palette = mpl.colormaps["tab10"].colors
    for c, name in enumerate(classes):
        chosen = y == c
        ax.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.6, color=palette[c % len(palette)], label=name)
    ax.set(xticks=[], yticks=[], title=title)
    if legend:
        ax.legend(markerscale=3, fontsize=9, loc="best")
    return ax
