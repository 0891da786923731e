"""Every work the book cites is in its bibliography, and the list reads as the text cites."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
# "Han et al. 2015", "Frankle & Carbin 2019", "Ganin and Lempitsky 2015": how prose and claims name a paper
NAMED = re.compile(r"\b([A-Z][\w'-]+(?: [A-Z][\w'-]+)?)(?: et al\.| (?:&|and) [A-Z][\w'-]+),? \(?(\d{4})")


@pytest.fixture(scope="module")
def style():
    spec = importlib.util.spec_from_file_location("author_year_bibliography",
                                                  ROOT / "book" / "_ext" / "author_year_bibliography.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _texts() -> list[tuple[str, str]]:
    """(where, text) for every chapter cell, book page and claims registry field."""
    texts = [(path.name, cell.source) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
             for cell in nbformat.read(path, as_version=4).cells]
    texts += [(path.name, path.read_text()) for path in sorted((ROOT / "book").glob("*.md"))]
    for path in sorted((ROOT / "claims").glob("*.yml")):
        for claim_id, entry in (yaml.safe_load(path.read_text()) or {}).items():
            texts += [(claim_id, str(entry.get(field, ""))) for field in ("paper", "reason", "statement")]
    return texts


def _works(style) -> set[tuple[str, str]]:
    """(first author's surname, year) of every entry of the bibliography."""
    works = set()
    for entry in parse_file(BIB).entries.values():
        surname, _, year = style.author_year(entry).replace(" et al.", "").rpartition(" ")
        works.add((surname.split(" and ")[0], year))
    return works


def test_every_cited_key_is_in_the_bibliography():
    keys = set(parse_file(BIB).entries)
    cited = {key.strip() for _, text in _texts() for group in re.findall(r"\{cite[tp]?\}`([^`]+)`", text)
             for key in group.split(",")}
    assert cited, "no {cite} found: the pattern no longer matches the chapters"
    assert not cited - keys, f"cited but not in book/references.bib: {sorted(cited - keys)}"


def test_every_paper_named_in_prose_or_claims_is_in_the_bibliography(style):
    works = _works(style)
    known = works | {(surname.split(" ")[-1], year) for surname, year in works}  # "Razavian" for "Sharif Razavian"
    named = [(where, m.group(1), m.group(2)) for where, text in _texts() for m in NAMED.finditer(text)]
    assert len(named) > 20, "the pattern no longer finds the papers the book names"
    missing = sorted({f"{name} {year} ({where})" for where, name, year in named
                      if (name, year) not in known and (name.split(" ")[-1], year) not in known})
    assert not missing, f"named but not in book/references.bib: {missing}"


def test_the_list_is_labelled_author_year_and_each_label_once(style):
    labels = [entry.label for entry in style.AuthorYearStyle().format_bibliography(parse_file(BIB))]
    assert len(set(labels)) == len(labels)
    assert all(re.fullmatch(r"[^\d]+ \d{4}[a-z]?", label) for label in labels), labels
    assert "Goodfellow et al. 2015a" in labels and "Frankle and Carbin 2019" in labels
    assert "Müller et al. 2019" in labels  # LaTeX accents decoded, as the text prints them


def test_every_work_in_the_bibliography_is_named_somewhere(style):
    """The references page lists the whole file (`:all:`), so nothing in it goes unused."""
    texts = _texts()
    cited = {key.strip() for _, text in texts for group in re.findall(r"\{cite[tp]?\}`([^`]+)`", text)
             for key in group.split(",")}
    named = {(m.group(1).split(" ")[-1], m.group(2)) for _, text in texts for m in NAMED.finditer(text)}
    named |= {(m.group(1), m.group(2)) for _, text in texts for m in re.finditer(r"\b([A-Z][\w'-]+) (\d{4})", text)}
    unused = []
    for key, entry in parse_file(BIB).entries.items():
        surname, _, year = style.author_year(entry).replace(" et al.", "").rpartition(" ")
        if key not in cited and (surname.split(" and ")[0].split(" ")[-1], year) not in named:
            unused.append(key)
    assert not unused, f"in book/references.bib but named nowhere in the book: {unused}"

