"""The page check: each kind of breakage a reader could meet is reported, a sound page is not."""

import base64
import shutil

import pytest

from nblib import pagecheck

from .conftest import needs_chromium

ONE_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

def png(alpha: int) -> str:
    """A 4 × 4 white figure as a notebook holds it (base64 PNG), `alpha` its opacity."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (255, 255, 255, alpha)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def site(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "figure.png").write_bytes(ONE_PIXEL_PNG)
    (tmp_path / "index.html").write_text(
        '<html><body><p id="top">a sound page</p><img src="figure.png">'
        '<a href="sub/page.html#here">a page</a> <a href="#top">top</a> '
        '<a href="https://example.org/">another host</a> <a href="figure.png">a file</a></body></html>')
    return tmp_path


def page_with(site, body: str) -> None:
    (site / "sub" / "page.html").write_text(f'<html><body><p id="here">text</p>{body}</body></html>')


@needs_chromium
def test_a_sound_site_has_no_problems(site):
    page_with(site, '<img src="../figure.png"><a href="../index.html#top">back</a>'
                    '<span class="math"><mjx-container>x²</mjx-container></span>')  # typeset maths
    assert pagecheck.check_site(site, ["index.html", "sub/page.html"]) == []


@needs_chromium
@pytest.mark.parametrize("body, expected", [
    ('<img src="../missing.png">', "image did not render: /missing.png"),
    ('<img src="../not-an-image.png">', "image did not render: /not-an-image.png"),
    ('<a href="../nowhere.html">x</a>', "link to a missing page: /nowhere.html"),
    ('<a href="../index.html#gone">x</a>', "link to a missing anchor: /index.html#gone"),
    ("<script>undefinedFunction();</script>", "JavaScript error: Uncaught ReferenceError: undefinedFunction"),
    ("<script>Promise.reject('no');</script>", "JavaScript error: unhandled promise rejection: no"),
    ('<script src="../missing.js"></script>', "resource did not load: /missing.js"),
    ('<span class="math notranslate">\\(x^2\\)</span>', "1 formula(s) shown as raw TeX"),
    # the browser has no network beyond the book: MathJax from a CDN never loads
    ('<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
     '<div class="math notranslate">\\[e^{i\\pi} + 1 = 0\\]</div>', "1 formula(s) shown as raw TeX"),
    # a laptop's window: a block wider than its column scrolls sideways, as does a page wider than the window
    ('<pre style="overflow-x: auto; width: 300px">' + "x = 1  " * 100 + "</pre>",
     'scrolls sideways at 1280 px: pre'),
    ('<div style="width: 3000px">wide</div>', "scrolls sideways at 1280 px: the page itself"),
])
def test_each_breakage_is_reported_with_its_page(site, body, expected):
    (site / "not-an-image.png").write_text("this is text")
    page_with(site, body)
    problems = pagecheck.check_site(site)
    assert [p.page for p in problems] == ["sub/page.html"], problems
    assert str(problems[0]).startswith(f"sub/page.html: {expected}")


@needs_chromium
def test_a_promised_page_that_is_missing_is_reported(site):
    page_with(site, "")
    problems = pagecheck.check_site(site, ["index.html", "book/claims.html"])
    assert [str(p) for p in problems] == ["book/claims.html: page missing from the built book"]


def test_no_built_book_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no built book"):
        pagecheck.check_site(tmp_path)


def test_missing_browser_says_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pagecheck.BrowserMissing, match="chromium-driver"):
        pagecheck.find_browser()


def test_pages_skip_static_files(site):
    page_with(site, "")
    (site / "_static").mkdir()
    (site / "_static" / "theme.html").write_text("<html></html>")
    assert [p.relative_to(site).as_posix() for p in pagecheck.pages(site)] == ["index.html", "sub/page.html"]


def _notebook(*cells):
    return {"cells": list(cells)}


def _result(text, kind="execute_result", **data):
    return {"cell_type": "code", "source": "x", "metadata": {},
            "outputs": [{"output_type": kind, "data": {"text/plain": text, **data}}]}


@pytest.mark.parametrize("cell, problem", [
    (_result("{'epochs': 8, 'train': 5000}"), "a raw list, dict or tuple"),
    (_result("True"), "a bare True/False/None"),
    (_result("np.float64(0.1)"), "a NumPy scalar's repr"),
    (_result("DANN    0.75\nName: accuracy, dtype: float64"), "a pandas Series footer"),
    (_result("<nblib.models.MLPStack object at 0x7f>"), "an object's repr"),
    ({"cell_type": "code", "source": "x", "metadata": {},
      "outputs": [{"output_type": "stream", "name": "stdout", "text": "x.py:3: FutureWarning: soon"}]}, "a warning"),
    ({"cell_type": "code", "source": "x", "metadata": {},
      "outputs": [{"output_type": "stream", "name": "stdout", "text": "fit:  40%|####  | 4/10"}]}, "a progress bar"),
    (_result("", "display_data", **{"text/markdown": 'Trained for S["epochs"] epochs.'}), 'S["epochs"]'),
    ({"cell_type": "markdown", "source": 'Each run sees `S["train"]` images.'}, 'S["train"]'),

    (_result("  a\n0 NaN", **{"text/html": "<table><tr><td>0.5</td><td>NaN</td></tr></table>"}),
     "NaN in a table cell"),
    (_result("  a\n0 False", **{"text/html": "<table><tr><td>False</td></tr></table>"}),
     "False in a table cell"),
    (_result("  a\n0 nan%", **{"text/html": "<table><tr><th>x</th><td>nan%</td></tr></table>"}),
     "nan% in a table cell"),
    ({"cell_type": "code", "source": "1 / 0", "metadata": {},
      "outputs": [{"output_type": "error", "ename": "ZeroDivisionError"}]}, "an error (ZeroDivisionError)"),
    (_result("<Figure>", "display_data", **{"image/png": png(0)}),
     "a figure with a transparent background"),
])
def test_a_chapter_output_a_reader_must_not_see_is_named(cell, problem):
    (found,) = pagecheck.output_defects(_notebook(cell))
    assert problem in found


def test_a_constant_the_notebook_assigns_is_named_in_prose_not_an_acronym():
    code = {"cell_type": "code", "source": "NOISE_LEVEL = 0.15\nFGSM_EPS = 0.1", "metadata": {}, "outputs": []}
    said = _result("", "display_data", **{"text/markdown": "ε is `FGSM_EPS` here."})
    found = pagecheck.output_defects(_notebook(
        code, said, {"cell_type": "markdown", "source": "σ is a share (`NOISE_LEVEL`) of `MNIST`'s range."}))
    assert len(found) == 2 and "`FGSM_EPS`" in found[0] and "`NOISE_LEVEL`" in found[1]


def test_tables_figures_stderr_and_things_to_try_pass():
    clean = _notebook(
        _result("   value\nsetting", "execute_result", **{"text/html": "<table></table>"}),  # a DataFrame
        _result("<Figure size 640x480>", "display_data", **{"image/png": png(255)}),
        {"cell_type": "code", "source": "fit()", "metadata": {},  # stderr: the book removes it
         "outputs": [{"output_type": "stream", "name": "stderr", "text": "fit: 40%|####  | 4/10 UserWarning"}]},
        {"cell_type": "markdown", "source": "Chapter 7 uses `nblib.fit` and `PGD` (an acronym, not a setting)."},
        {"cell_type": "markdown", "source": '## Things to try\n\n1. Set `S["width"]` to 8 or `RECIPES`.'})
    assert pagecheck.output_defects(clean) == []
