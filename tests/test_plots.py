"""The book's shared figures, drawn from real images."""

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (after the backend)

from nblib import plots  # noqa: E402


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
