"""The book's figure style, set without importing pyplot: `nblib.setup` applies it in every
chapter's kernel, and a kernel that draws nothing (the runner's tests start ~80) need not pay
pyplot's import (~0.8 s here)."""

import matplotlib as mpl

# seaborn's `set_theme(context="notebook", style="whitegrid")` as plain rcParams (its "deep"
# colours; matplotlib's colour map, which no figure uses), so that a chapter's kernel does not
# import seaborn and, through it, scipy.stats: 1 s of every kernel's start. A test checks the
# two agree.
BOOK_STYLE = {
    "axes.axisbelow": True, "axes.edgecolor": ".8", "axes.grid": True, "axes.labelcolor": ".15",
    "axes.labelsize": 12.0, "axes.linewidth": 1.25, "axes.titlesize": 12.0,
    "axes.prop_cycle": mpl.cycler(color=["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                                         "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]),
    "font.size": 12.0, "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans",
                                           "sans-serif"],
    "grid.color": ".8", "grid.linewidth": 1.0, "legend.fontsize": 11.0, "legend.title_fontsize": 12.0,
    "lines.solid_capstyle": "round", "patch.edgecolor": "w", "patch.force_edgecolor": True, "text.color": ".15",
    "xtick.bottom": False, "xtick.color": ".15", "xtick.labelsize": 11.0, "xtick.major.size": 6.0,
    "xtick.major.width": 1.25, "xtick.minor.size": 4.0, "xtick.minor.width": 1.0,
    "ytick.left": False, "ytick.color": ".15", "ytick.labelsize": 11.0, "ytick.major.size": 6.0,
    "ytick.major.width": 1.25, "ytick.minor.size": 4.0, "ytick.minor.width": 1.0,
}


def book_style() -> None:
    """The book's figure style, seaborn's whitegrid at notebook scale (`BOOK_STYLE`); `nblib.setup` applies it."""
    mpl.rcParams.update(BOOK_STYLE)
