"""Every chapter, end to end at the smoke profile, then a smoke build of the book."""

import json
import subprocess
import sys

import pytest
import yaml

from nblib import runner

from .conftest import ROOT, book_copy

CHAPTERS = [nb.stem for nb in runner.notebooks(ROOT)]


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    root = book_copy(tmp_path_factory.mktemp("book"))
    results = {r.chapter: r for r in runner.run(root, [], "smoke", timeout=900, keep_going=True)}
    return root, results


def test_there_are_chapters():
    assert "01_function_fitting" in CHAPTERS


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


def test_book_builds(smoke_book):
    root, results = smoke_book
    assert all(r.ok for r in results.values())
    index = runner.build_book(root)
    assert index.exists()
    for chapter in CHAPTERS:
        html = (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").read_text()
        assert "<img" in html
    assert "claims" in (root / "book" / "claims.md").read_text().lower()


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
