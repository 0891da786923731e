"""The GitHub workflows: one job per chapter, a merge into one book, a gate that a failed or
skipped chapter fails (issue 32). GitHub runs them; here we check they say so."""

import subprocess

import yaml

from .conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def _jobs(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())["jobs"]


def test_each_chapter_is_a_job_and_the_book_is_merged_from_their_artifacts():
    jobs = _jobs("chapters.yml")
    listing = next(s["run"] for s in jobs["list"]["steps"] if s.get("id") == "list")
    listed = subprocess.run(["bash", "-c", listing.replace('>> "$GITHUB_OUTPUT"', "")], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    assert listed.startswith("chapters=[\"01_function_fitting\"") and "11_fast_adversarial" in listed
    chapter = jobs["chapter"]
    assert chapter["strategy"]["matrix"]["chapter"] == "${{ fromJSON(needs.list.outputs.chapters) }}"
    assert chapter["strategy"]["fail-fast"] is False
    runs = [s.get("run", "") for s in chapter["steps"]]
    assert any("nblib run --profile ${{ inputs.profile }} ${{ matrix.chapter }}" in r for r in runs)
    upload = next(s for s in chapter["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "results/${{ matrix.chapter }}.json" in upload["with"]["path"]
    book_steps = [s.get("run", "") for s in jobs["book"]["steps"]]
    assert jobs["book"]["needs"] == "chapter"
    assert book_steps.index(".venv/bin/nblib merge artifacts/chapter-*") < book_steps.index(".venv/bin/nblib book")


def test_the_gate_fails_unless_every_job_succeeded_skipped_included():
    gate = _jobs("chapters.yml")["gate"]
    assert gate["if"] == "always()" and set(gate["needs"]) == {"list", "tests", "chapter", "book"}
    script = gate["steps"][0]["run"]
    assert 'n["result"] != "success"' in script  # "skipped" and "cancelled" are not success
    assert _jobs("book.yml")["deploy"]["needs"] == "chapters"  # nothing is published past a failed gate
    full = _jobs("full.yml")["chapters"]
    assert full["uses"] == "./.github/workflows/chapters.yml" and full["with"]["profile"] == "full"
