"""Figures are numbered per chapter in their captions ("Figure 7.2."), not by Sphinx.

Each figure cell carries ``mystnb.figure`` metadata whose caption starts with its number
in the chapter. Sphinx's own numbering counts across the whole book (chapter 10 opened
at "Fig. 21") and would print both numbers; ``numfig: false`` in ``_config.yml`` is not
enough, because sphinx-jupyterbook-latex sets ``numfig`` back to true when the
configuration is read. This runs after it and turns it off again.
"""


def _no_book_wide_figure_numbers(app, config):
    config.numfig = False


def setup(app):
    app.connect("config-inited", _no_book_wide_figure_numbers, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
