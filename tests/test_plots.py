"""The book's shared figures, drawn from real images."""

import warnings

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (after the backend)

from nblib import plots, style  # noqa: E402


def test_image_rows_draws_a_signed_row_on_one_scale_with_its_colour_bar(fashion):
    clean = fashion[1].x[:4]
    change = clean.flip(0) - clean  # signed, as a perturbation is
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a layout warning would be printed on the page
        fig = plots.image_rows({"clean": clean, "change": change}, titles={"clean": list("abcd")},
                               diverging=("change",))
        fig.canvas.draw()
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(images) == 8 and len(bars) == 1, "one colour bar, for the signed row only"
    limits = {im.get_clim() for ax in images[4:] for im in ax.images}
    scale = float(change.abs().max())
    assert limits == {(-scale, scale)}, "every image of the row on the same scale, centred on zero"
    assert all(ax.title.get_fontsize() >= 10 for ax in images[:4])
    plt.close(fig)


def test_clipped_map_scales_to_its_quantile_and_keeps_the_shape(fashion):
    heat = fashion[1].x[:2].abs()  # real images as a stand-in for a saliency map's magnitudes
    shown = plots.clipped_map(heat, quantile=0.9)
    assert shown.shape == heat.shape and float(shown.min()) >= 0 and float(shown.max()) == 1
    top = heat.flatten().quantile(0.9)
    assert (shown == 1).float().mean() >= 0.1 - 1e-6, "everything above the quantile is clipped to 1"
    below = heat < top
    assert ((shown[below] - heat[below] / top).abs().max()) < 1e-6, "below it, scaled linearly"
    assert plots.clipped_map(torch.zeros(3, 3)).eq(0).all(), "an all-zero map stays zero, not NaN"


def test_book_style_is_seaborns_whitegrid_theme_and_a_chapters_start_imports_no_plotting():
    import subprocess
    import sys

    probe = ("import sys, nblib; nblib.setup('x', 'smoke', 0, 'cpu'); nblib.claim('x/y', [1.0, 2.0], '>', 0.5); "
             "print(*(name in sys.modules for name in ('seaborn', 'matplotlib.pyplot', 'scipy.stats'))); "
             "import matplotlib.pyplot as plt; print(plt.rcParams['axes.edgecolor'])")
    printed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert printed[-2:] == ["False False False", ".8"], "a kernel that draws nothing pays for none of them"
    import seaborn as sns  # the peer

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        sns.set_theme(context="notebook", style="whitegrid")
        theirs = dict(matplotlib.rcParams)
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        style.book_style()
        ours = dict(matplotlib.rcParams)
    for rc in (theirs, ours):  # seaborn's colours are RGB tuples, ours hex strings
        rc["axes.prop_cycle"] = [matplotlib.colors.to_hex(c) for c in rc["axes.prop_cycle"].by_key()["color"]]
    differ = {key for key in theirs if theirs[key] != ours[key]}
    assert differ == {"image.cmap"}, "seaborn's own colour map, 'rocket', is the one thing left out"



def test_umap_points_matches_umap_learns_own_exact_neighbours_and_is_repeatable(fashion):
    import numpy as np
    import umap
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import NearestNeighbors

    images = fashion[1].x[:300].flatten(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a chapter run beside another
    try:
        points = plots.umap_points(images, seed=0)
        assert torch.get_num_threads() == 1, "numba's OpenMP layer must leave torch's thread count alone"
    finally:
        torch.set_num_threads(threads)
    assert points.shape == (300, 2) and points.dtype == torch.float32
    assert torch.equal(points, plots.umap_points(images, seed=0)), "seeded: the same picture twice"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn's own notes on n_jobs and seeds
        own = umap.UMAP(n_neighbors=15, n_epochs=200, random_state=0, n_jobs=1).fit(images.numpy())
    # umap-learn's graph, from all pairwise distances, holds the pairs scikit-learn finds
    x = images.numpy().astype(np.float64)
    _, neighbours = NearestNeighbors(n_neighbors=15).fit(x).kneighbors(x)
    graph = own.graph_.tocsr()
    kept = np.mean([graph[i, j] > 0 for i, row in enumerate(neighbours) for j in row[1:]])
    assert kept > 0.99, f"only {kept:.1%} of our neighbour pairs are in umap-learn's graph"
    ours, theirs = (trustworthiness(x, e, n_neighbors=15) for e in (points.numpy(), own.embedding_))
    assert ours > 0.85 and abs(ours - theirs) < 0.02, (ours, theirs)


def test_umap_points_refuses_too_few_points_or_a_flat_batch():
    with pytest.raises(ValueError, match="n_neighbors"):
        plots.umap_points(torch.rand(10, 5), seed=0)
    with pytest.raises(ValueError, match="N × D"):
        plots.umap_points(torch.rand(40, 3, 4), seed=0)
