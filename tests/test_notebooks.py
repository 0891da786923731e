"""Every chapter, end to end at the smoke profile (as `nblib run` runs it, and as JupyterLab
does), then a smoke build of the book, checked page by page in Chromium."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

from nblib import pagecheck, runner

from .conftest import ROOT, book_copy, needs_chromium

CHAPTERS = [nb.stem for nb in runner.notebooks(ROOT)]


def _chapters_needed(session: pytest.Session) -> list[str]:
    """The chapters the selected tests need: those of per-chapter tests (``-k 05_transfer``
    runs one chapter, not the book), or every chapter when a whole-book test is selected."""
    chapters = set()
    for item in session.items:
        if {"smoke_book", "lab_book"} & set(getattr(item, "fixturenames", ())):
            chapter = getattr(item, "callspec", None) and item.callspec.params.get("chapter")
            if not chapter:
                return []  # [] runs every chapter
            chapters.add(chapter)
    return sorted(chapters)


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory, request):
    root = book_copy(tmp_path_factory.mktemp("book"))
    chapters = _chapters_needed(request.session)
    results = {r.chapter: r for r in runner.run(root, chapters, "smoke", timeout=900, keep_going=True, jobs=2)}
    return root, results


@pytest.fixture(scope="session")
def lab_book(tmp_path_factory, smoke_book, request):
    """The chapters run as in JupyterLab ($NBLIB_BATCH unset), after the batch run has
    filled the model cache."""
    root = book_copy(tmp_path_factory.mktemp("lab"))
    results = runner.run(root, _chapters_needed(request.session), "smoke", timeout=900, keep_going=True, jobs=2,
                         interactive=True)
    return root, {r.chapter: r for r in results}


def test_the_table_of_contents_lists_every_chapter_once():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = [Path(entry["file"]).name for part in toc["parts"] for entry in part.get("chapters", [])
              if entry["file"].startswith("book/chapters/")]
    assert listed == CHAPTERS and len(CHAPTERS) >= 11


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_source_conventions(chapter):
    nb = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c["outputs"] or c["execution_count"] for c in code), "commit notebooks without outputs"
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert 'profile = "quick"' in "".join(code[0]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    toc = (ROOT / "_toc.yml").read_text()
    assert f"book/chapters/{chapter}" in toc
    shown = [line for c in code if "remove-input" not in c["metadata"].get("tags", [])
             for line in "".join(c["source"]).splitlines()]
    assert [line for line in shown if len(line) > 88] == [], "code the reader sees fits the page: ≤ 88 characters"
    # say() returns its prose: only a cell's last expression is shown, so one said earlier is lost
    python = TransformerManager().transform_cell  # IPython's magics (%…, !…) as the Python a kernel runs
    unsaid = [ast.unparse(statement)[:60] for c in code
              for statement in ast.parse(python("".join(c["source"]))).body[:-1]
              if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
              and ast.unparse(statement.value.func).endswith("say")]
    assert unsaid == [], "prose said before a cell's last line never reaches the page"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_at_smoke(smoke_book, chapter):
    root, results = smoke_book
    result = results[chapter]
    assert result.ok, result.error
    assert result.passed + result.failed > 0, "every chapter records claims"
    executed = json.loads((root / "book" / "chapters" / f"{chapter}.ipynb").read_text())
    images = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]
              if "image/png" in o.get("data", {})]
    assert images, "every chapter shows figures"
    tables = ["".join(o["data"]["text/markdown"]) for c in executed["cells"] for o in c.get("outputs", [])
              if "| finding | ours | paper | holds |" in "".join(o.get("data", {}).get("text/markdown", ""))]
    assert len(tables) == 1, "the chapter shows its findings table once"
    headers = ("| finding |", "| expectation |", "|---")
    rows = [line for line in tables[0].splitlines() if line.startswith("|") and not line.startswith(headers)]
    assert len(rows) == result.passed + result.failed, "the findings tables come after the last claim"
    number = int(chapter[:2])
    for c in executed["cells"]:
        shown = [o for o in c.get("outputs", []) if o["output_type"] in ("display_data", "execute_result")]
        if any("image/png" in o["data"] for o in shown):
            source = "".join(c["source"])[:60]
            figure = c["metadata"].get("mystnb", {}).get("figure", {})
            # myst-nb wraps every displayed output of the cell in the figure: tables and prose go elsewhere
            assert len(shown) == 1, f"a figure cell shows only its figure: {source!r}"
            assert re.match(rf"\*\*Figure {number}\.\d+\.\*\* \S", figure.get("caption", "")), (
                f"every figure has a numbered caption (cell metadata mystnb.figure): {source!r}")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_as_in_jupyterlab(lab_book, chapter):
    root, results = lab_book
    assert results[chapter].ok, results[chapter].error
    executed = json.loads((root / "book" / "chapters" / f"{chapter}.ipynb").read_text())
    widgets = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "in a live kernel the chapter shows its explorer as a widget"


@pytest.fixture(scope="session")
def built_book(smoke_book):
    root, results = smoke_book
    assert all(r.ok for r in results.values())
    return root, runner.build_book(root, page_check=False)


def test_book_builds(built_book):
    root, index = built_book
    assert index.exists()
    for chapter in CHAPTERS:
        html = (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").read_text()
        assert "<img" in html
    page = (root / "book" / "claims.md").read_text()
    assert os.environ["NBLIB_CACHE"] not in page, "the data's folders on this machine are not on the page"
    for chapter in CHAPTERS:  # every recorded claim is on the claims page
        for record in json.loads((root / "results" / f"{chapter}.json").read_text()):
            assert f"`{record['id']}`" in page


@needs_chromium
def test_every_page_of_the_built_book_loads_in_chromium(built_book):
    root, index = built_book
    assert pagecheck.check_site(index.parent, pagecheck.expected_pages(root)) == []


@pytest.fixture(scope="module")
def damaged_site(built_book, tmp_path_factory):
    """A copy of the smoke book's site with two faults, checked in one pass of Chromium: the
    first chapter's first figure emptied, and the first page with maths loading MathJax from a
    CDN. Returns the two pages and the problems found."""
    root, index = built_book
    html = tmp_path_factory.mktemp("damaged") / "html"
    shutil.copytree(index.parent, html)
    figure_page = html / "book" / "chapters" / f"{CHAPTERS[0]}.html"
    figure = re.search(r'<img[^>]+src="([^"]+_images/[^"]+)"', figure_page.read_text()).group(1)
    (figure_page.parent / figure).resolve().write_bytes(b"")
    maths_page = next(p for p in sorted((html / "book" / "chapters").glob("*.html")) if 'class="math' in p.read_text())
    text = maths_page.read_text()
    assert "_static/mathjax/tex-chtml.js" in text  # the book serves MathJax itself
    maths_page.write_text(re.sub(r'src="[^"]*_static/mathjax/tex-chtml\.js"',
                                 'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"', text))
    problems = [str(p) for p in pagecheck.check_site(html)]
    assert all(": image did not render" in p or "shown as raw TeX" in p for p in problems), problems
    return figure_page.name, maths_page.name, problems


@needs_chromium
def test_a_figure_that_does_not_render_fails_the_check_naming_its_chapter(damaged_site):
    figure_page, _, problems = damaged_site
    broken = [p for p in problems if ": image did not render" in p]
    assert [p.split(":")[0] for p in broken] == [f"book/chapters/{figure_page}"], problems


@needs_chromium
def test_maths_that_needs_a_cdn_fails_the_check(damaged_site):
    _, maths_page, problems = damaged_site
    raw = [p for p in problems if "shown as raw TeX" in p]
    assert [p.split(":")[0] for p in raw] == [f"book/chapters/{maths_page}"], problems


def test_toc_lists_existing_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for f in files:
        if f.startswith("book/chapters/"):
            assert (ROOT / "notebooks" / f"{f.split('/')[-1]}.ipynb").exists()
        elif f != "book/claims":
            assert (ROOT / f"{f}.md").exists()


def test_cli_entry_point():
    out = subprocess.run([sys.executable, "-m", "nblib.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout and "book" in out.stdout
