"""Prose computed from results, and the method's source shown in the page.

`say` turns an f-string into a Markdown paragraph: numbers and comparisons in a chapter's
prose are written this way (in a cell tagged ``remove-input``), never typed by hand, so a
sentence cannot disagree with the figure beside it. `show_source` puts the nblib function
that implements a method under the equations, collapsed, so the reader never has to leave
the page. Both render the same in JupyterLab and in the built book.
"""

from __future__ import annotations

import html
import inspect


def say(text: str):
    """`text` (Markdown, usually an f-string over the chapter's results) as rendered prose."""
    from IPython.display import Markdown

    return Markdown(inspect.cleandoc(text))


def show_source(*objects, title: str = ""):
    """The source of functions or classes, highlighted, in one collapsed block."""
    from IPython.display import HTML
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    if not objects:
        raise ValueError("show_source needs at least one function or class")
    names = [f"{o.__module__}.{o.__qualname__}" for o in objects]
    code = "\n\n".join(inspect.getsource(o) for o in objects)
    body = highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))
    summary = html.escape(title or "source: " + ", ".join(names))
    return HTML(f'<details class="nblib-source"><summary>{summary}</summary>{body}</details>')


def settings_table(settings: dict, profile: str = ""):
    """A chapter's settings (its profile's dict) as a two-column table — never a raw dict on
    the page: lists read "10, 30, 100", whole numbers "60,000"."""
    import pandas as pd

    def readable(value) -> str:
        if isinstance(value, (list, tuple)):
            return ", ".join(readable(v) for v in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"

    if not isinstance(settings, dict) or not settings:
        raise ValueError(f"settings_table needs a non-empty dict of settings, got {settings!r}")
    column = f"value ({profile})" if profile else "value"
    return pd.DataFrame({column: [readable(v) for v in settings.values()]},
                        index=pd.Index(list(settings), name="setting"))
