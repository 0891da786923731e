"""The page check: each kind of breakage a reader could meet is reported, a sound page is not."""

import base64
import shutil

import pytest

from nblib import pagecheck

from .conftest import needs_chromium

ONE_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

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
