"""The runner and the `nblib` command, on small notebooks made for each fault."""

import json
import os
import subprocess

import nbformat
import pytest

from nblib import cli, ledger, runner

from .conftest import make_notebook, small_book_fixtures

CLAIM_OK = 'import nblib\nnblib.setup("01_ok", profile, seed)\nnblib.claim("ok/x", 1.0, ">", 0.5);'


def _book(path):
    make_notebook(path / "notebooks" / "01_ok.ipynb", CLAIM_OK)
    make_notebook(path / "notebooks" / "02_bad.ipynb", "x = 1", "raise ValueError('broken on purpose')")
    return path


_published_once, root = small_book_fixtures(_book)


def test_unknown_chapter_lists_valid_ones(root, capsys):
    assert cli.main(["--root", str(root), "run", "07"]) == 2
    assert "unknown chapter '07'; valid chapters: 01_ok, 02_bad" in capsys.readouterr().err


def test_bad_profile(root, capsys):
    assert cli.main(["--root", str(root), "run", "01", "--profile", "huge"]) == 2
    assert "valid profiles: smoke, quick, full" in capsys.readouterr().err


def test_failure_names_chapter_and_cell_and_keep_going(root, capsys):
    assert cli.main(["--root", str(root), "run", "02", "01", "--keep-going"]) == 1
    out = capsys.readouterr().out
    assert "02_bad" in out and "code cell 3" in out and "ValueError: broken on purpose" in out
    chapters = root / "book" / "chapters"
    assert (chapters / "01_ok.ipynb").exists() and (chapters / "02_bad.failed.ipynb").exists()
    assert not (chapters / "02_bad.ipynb").exists() and not list(chapters.glob(".*"))
    assert json.loads((root / "results" / "01_ok.json").read_text())[0]["passed"]
    with pytest.raises(RuntimeError, match="02_bad failed on its last run"):
        runner.build_book(root)


def test_without_keep_going_stops_at_first_failure(root, capsys):
    assert cli.main(["--root", str(root), "run", "02", "01"]) == 1
    assert not (root / "book" / "chapters" / "01_ok.ipynb").exists()


def test_failed_claim_fails_the_chapter(tmp_path, capsys):
    make_notebook(tmp_path / "notebooks" / "03_claim.ipynb",
                  'import nblib\nnblib.setup("03_claim", profile, seed)\nnblib.claim("c/x", 0.1, ">", 0.5)')
    results = runner.run(tmp_path, ["03"], "quick", 300, False)
    assert not results[0].ok and "ClaimFailed" in results[0].error
    assert results[0].failed == 1  # recorded before it raised
    assert runner.run(tmp_path, ["03"], "smoke", 300, False)[0].ok  # smoke records, does not assert


def test_timeout_kills_the_chapter_and_keeps_the_old_copy(root):
    make_notebook(root / "notebooks" / "04_slow.ipynb", "import time\ntime.sleep(600)")
    chapters = root / "book" / "chapters"
    chapters.mkdir(parents=True)
    (chapters / "04_slow.ipynb").write_text("previous good copy")
    result = runner.run_chapter(root / "notebooks" / "04_slow.ipynb", root, "smoke", timeout=6)
    assert not result.ok and "timed out after 6 s" in result.error
    assert (chapters / "04_slow.ipynb").read_text() == "previous good copy"
    assert not list(chapters.glob(".*"))


def test_interrupt_leaves_no_partial_notebook(root, monkeypatch):
    def interrupted(self, timeout=None):
        raise KeyboardInterrupt
    killed = []
    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    monkeypatch.setattr(runner.os, "killpg", lambda pid, sig: killed.append(pid))
    with pytest.raises(KeyboardInterrupt):
        runner.run_chapter(root / "notebooks" / "01_ok.ipynb", root, "smoke", timeout=60)
    assert killed and not list((root / "book" / "chapters").glob("*"))


def test_book_refuses_unexecuted_chapters(root):
    with pytest.raises(RuntimeError, match="01_ok has not been executed"):
        runner.build_book(root)


@pytest.mark.published
def test_claims_page(root):
    text, total, passed = runner.claims_page(root)
    assert (total, passed) == (1, 1) and "`ok/x`" in text and "Measured at profile smoke on cpu" in text


@pytest.mark.published
def test_a_failed_rerun_keeps_the_last_good_notebook_and_claims(root):
    good = (root / "book" / "chapters" / "01_ok.ipynb").read_text()
    make_notebook(root / "notebooks" / "01_ok.ipynb", CLAIM_OK.replace('1.0, ">"', '2.0, ">"'), "1 / 0")
    assert not runner.run(root, ["01"], "smoke", 300, False)[0].ok
    assert (root / "book" / "chapters" / "01_ok.ipynb").read_text() == good
    assert json.loads((root / "results" / "01_ok.json").read_text())[0]["value"] == 1.0  # not the failed run's
    with pytest.raises(RuntimeError, match="01_ok failed on its last run"):
        runner.build_book(root)


@pytest.mark.published
def test_build_report_lists_seconds_claims_and_changes(root, tmp_path, monkeypatch):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / "cache"))  # a machine that has built no book yet
    first = runner.build_report(root)
    assert "01_ok" in first and "smoke" in first and "no earlier build on this machine" in first
    assert "no claim changed since the last build" in runner.build_report(root)
    make_notebook(root / "notebooks" / "01_ok.ipynb", CLAIM_OK.replace('1.0, ">"', '0.25, ">"'))
    runner.run(root, ["01"], "smoke", 300, False)
    report = runner.build_report(root)
    assert "ok/x: 1 (pass, smoke) → 0.25 (FAIL, smoke)" in report
    row = next(line for line in report.splitlines() if line.startswith("01_ok"))
    assert row.split()[-2:] == ["0", "1"]  # passed, failed
    assert float(row.split()[2]) > 0  # the chapter's seconds


@pytest.mark.published
def test_build_report_survives_damaged_records(root, tmp_path, monkeypatch):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / "cache"))
    (root / "results" / runner.TIMINGS).write_text("{not json")
    from nblib import config
    (config.cache_dir() / runner.LAST_BUILD).write_text("[1, 2]")
    report = runner.build_report(root)
    assert "01_ok" in report and "?" in report and "no earlier build" in report


# ---- issue 34: one line that says what went wrong, never a traceback

def test_a_kernel_that_died_says_so(root):
    make_notebook(root / "notebooks" / "05_dies.ipynb", "import os\nos._exit(3)")
    result = runner.run_chapter(root / "notebooks" / "05_dies.ipynb", root, "smoke", timeout=120)
    assert not result.ok and "DeadKernelError" in result.error
    assert result.error.startswith("the kernel died")  # papermill's "failed before any cell ran" misled


@pytest.mark.parametrize("text, problem", [("{not json", "is not valid JSON"), ("{}", "not a list of claims"),
                                           ('[{"id": "x"}]', "record 0 lacks or has a wrong value, op, target"),
                                           ("drop profile", "record 0 lacks or has a wrong profile")])
@pytest.mark.published
def test_a_malformed_results_file_is_named_in_one_line(root, capsys, text, problem):
    (root / "book" / "chapters" / "02_bad.ipynb").write_text("{}")
    results = root / "results" / "01_ok.json"
    if text == "drop profile":  # a record the book pages read a field of that it lacks (was KeyError: 'profile')
        text = json.dumps([{k: v for k, v in r.items() if k != "profile"} for r in json.loads(results.read_text())])
    results.write_text(text)
    assert cli.main(["--root", str(root), "book", "--no-page-check"]) == 2
    err = capsys.readouterr().err
    assert str(root / "results" / "01_ok.json") in err and problem in err and len(err.splitlines()) == 1


@pytest.mark.published
def test_a_failed_jupyter_book_build_is_one_line(root, capsys, monkeypatch):
    (root / "book" / "chapters" / "02_bad.ipynb").write_text("{}")
    monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1))
    assert cli.main(["--root", str(root), "book", "--no-page-check"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "nblib book: error: jupyter-book build failed (exit code 1); its messages are above"


def test_a_killed_papermill_is_named_with_its_signal(root):
    make_notebook(root / "notebooks" / "06_oom.ipynb",
                  "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(60)")
    result = runner.run_chapter(root / "notebooks" / "06_oom.ipynb", root, "smoke", timeout=120)
    assert not result.ok and "was still running" in result.error and "papermill was killed by SIGKILL" in result.error


def test_a_chapter_whose_claims_cannot_be_read_back_fails_alone(root):
    make_notebook(root / "notebooks" / "07_junk.ipynb",
                  'import os\nopen(os.path.join(os.environ["NBLIB_CLAIMS_DIR"], "07_junk.json"), "w").write("{")')
    first, second = runner.run(root, ["07", "01"], "smoke", 300, True)
    assert not first.ok and "its claims could not be read back" in first.error and "not valid JSON" in first.error
    assert second.ok and (root / "book" / "chapters" / "07_junk.failed.ipynb").exists()


# ---- issue 32: a chapter whose notebook, profile and environment did not change is not run again

@pytest.mark.published
def test_an_unchanged_chapter_is_not_run_again(root, capsys):
    published = root / "book" / "chapters" / "01_ok.ipynb"
    made = published.stat().st_mtime_ns
    (again,) = runner.run(root, ["01"], "smoke", 300, False)
    assert again.ok and again.unchanged and (again.passed, again.failed) == (1, 0)
    assert published.stat().st_mtime_ns == made and "01_ok: unchanged since its last run" in capsys.readouterr().out
    (forced,) = runner.run(root, ["01"], "smoke", 300, False, force=True)
    assert forced.ok and not forced.unchanged and published.stat().st_mtime_ns != made


@pytest.mark.published
def test_a_chapter_runs_again_when_what_made_it_changed(root):
    notebook = root / "notebooks" / "01_ok.ipynb"
    make_notebook(notebook, CLAIM_OK + "\n# edited")
    (result,) = runner.run(root, ["01"], "smoke", 300, False)
    assert result.ok and not result.unchanged  # an edited notebook runs again
    # the run published the key of the notebook, registry, profile, seed and environment it ran
    # with; each part changed gives another key, so the next run executes the chapter again
    environment = runner.environment_fingerprint()  # nblib's code, package versions, data files
    key = runner.chapter_key(notebook, "smoke", environment)
    assert (root / "results" / "01_ok.key").read_text().strip() == key
    assert runner._unchanged(root, notebook, key)
    for changed in (runner.chapter_key(notebook, "quick", environment),
                    runner.chapter_key(notebook, "smoke", environment + "changed"),
                    runner.chapter_key(notebook, "smoke", environment, seed=1)):
        assert changed != key and not runner._unchanged(root, notebook, changed)
    (root / "results" / "01_ok.key").unlink()
    assert not runner._unchanged(root, notebook, key)


def test_the_environment_fingerprint_follows_nblib_and_the_data(tmp_path, monkeypatch):
    before = runner.environment_fingerprint()
    assert runner.environment_fingerprint() == before
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path))
    assert runner.environment_fingerprint() != before
    monkeypatch.delenv("NBLIB_DATA")
    monkeypatch.setattr(runner, "__file__", str(tmp_path / "nblib" / "runner.py"))  # other code
    (tmp_path / "nblib").mkdir()
    (tmp_path / "nblib" / "runner.py").write_text("# another nblib")
    assert runner.environment_fingerprint() != before


# ---- issue 28: the claims registry

REGISTERED = """
03/a:
  statement: a is above 0.5
  op: ">"
  target: 0.5
  null_value: 0.0
  unit: number
  seeds: 3
  rule: every
03/b:
  statement: b is above 0.5
  op: ">"
  target: 0.5
  null_value: 0.0
  unit: number
  seeds: 3
  rule: every
"""


@pytest.mark.published
def test_the_book_refuses_claims_that_do_not_match_the_registry(root):
    (root / "claims").mkdir()
    (root / "claims" / "03_reg.yml").write_text(REGISTERED)
    make_notebook(root / "notebooks" / "03_reg.ipynb",
                  'import nblib\nnblib.setup("03_reg", profile, seed)\nnblib.claim("03/a", [1.0, 0.9, 0.8])')
    (root / "notebooks" / "02_bad.ipynb").unlink()
    (result,) = runner.run(root, ["03"], "smoke", 300, False)
    assert result.ok and result.passed == 1
    assert runner.registry_mismatches(root) == ["03_reg: 03/b is registered in claims/03_reg.yml but was not measured"]
    results = root / "results" / "03_reg.json"
    results.write_text(results.read_text().replace('"03/a"', '"03/c"'))
    assert runner.registry_mismatches(root) == [
        "03_reg: 03/a is registered in claims/03_reg.yml but was not measured",
        "03_reg: 03/b is registered in claims/03_reg.yml but was not measured",
        "03_reg: 03/c was measured but is not registered in claims/03_reg.yml"]
    with pytest.raises(RuntimeError, match="do not match the registry"):
        runner.build_book(root, page_check=False)
    (root / "claims" / "03_reg.yml").write_text(REGISTERED.replace("target: 0.5", "target: 0.95", 1))
    (again,) = runner.run(root, ["03"], "smoke", 300, False)  # a changed registry runs the chapter again
    assert not again.unchanged and again.failed == 1  # 0.9 and 0.8 do not clear the new target at every seed


def test_another_seed_runs_apart_from_the_book_and_compare_lists_the_flips(root, capsys):
    make_notebook(root / "notebooks" / "03_seeded.ipynb",
                  'import nblib\nnblib.setup("03_seeded", profile, seed)\nnblib.claim("s/x", float(seed), "<", 0.5)')
    assert runner.run(root, ["03"], "smoke", 300, False)[0].ok
    (other,) = runner.run(root, ["03"], "smoke", 300, False, seed=1)
    assert other.ok and not other.unchanged  # the seed is part of the chapter's key
    book = json.loads((root / "results" / "03_seeded.json").read_text())
    apart = json.loads((root / "results" / "seed-1" / "03_seeded.json").read_text())
    assert (book[0]["value"], apart[0]["value"]) == (0.0, 1.0)
    assert (root / "results" / "seed-1" / "chapters" / "03_seeded.ipynb").exists()
    text, flips = runner.compare(root / "results", root / "results" / "seed-1")
    assert flips == 1 and "s/x: 0 holds → 1 FAILS" in text
    capsys.readouterr()
    assert cli.main(["compare", str(root / "results"), str(root / "results")]) == 0
    assert "0 asserted claim(s) flipped or measured on one side only" in capsys.readouterr().out
    assert cli.main(["--root", str(root), "clean"]) == 0
    assert not (root / "results" / "seed-1").exists()


def test_a_replicate_that_fails_still_publishes_its_verdicts_and_compare_counts_the_unmeasured(root):
    code = ('import nblib\nnblib.setup("03_seeded", profile, seed)\n'
            'nblib.claim("s/x", float(seed), "<", 0.5)\nnblib.claim("s/y", 1.0, ">", 0.5)')
    make_notebook(root / "notebooks" / "03_seeded.ipynb", code)
    assert runner.run(root, ["03"], "quick", 300, False)[0].ok
    (failed,) = runner.run(root, ["03"], "quick", 300, False, seed=1)
    assert not failed.ok and "s/x" in failed.error  # asserted at quick: the chapter stops at s/x
    apart = root / "results" / "seed-1"
    assert [r["id"] for r in json.loads((apart / "03_seeded.json").read_text())] == ["s/x"]
    assert not (apart / "03_seeded.key").exists()  # it runs again next time
    text, flips = runner.compare(root / "results", apart)
    assert flips == 2 and "s/y: 1 holds → (not measured)" in text


@pytest.mark.published
def test_key_findings_take_each_chapters_first_registered_claim(root):
    (root / "claims").mkdir()
    (root / "claims" / "03_reg.yml").write_text(REGISTERED)
    make_notebook(root / "notebooks" / "03_reg.ipynb",  # measured in the other order than registered
                  'import nblib\nnblib.setup("03_reg", profile, seed)\n'
                  'nblib.claim("03/b", [0.7, 0.8, 0.9])\nnblib.claim("03/a", [1.0, 0.9, 0.8])')
    assert runner.run(root, ["03"], "smoke", 300, False)[0].ok
    rows = runner.key_findings(root).splitlines()
    assert rows[2].startswith("| {doc}`chapters/01_ok` | ok/x |")  # a chapter without a registry: its first claim
    assert rows[3] == "| {doc}`chapters/03_reg` | a is above 0.5 | mean 0.9 (3 seeds) | yes |"
    assert len(rows) == 4  # 02_bad recorded nothing: no row


# ---- issue 32: chapters side by side (`--jobs`), and chapters run elsewhere merged into one book

def _waits_for(marker_dir, mine, other):
    """A chapter that marks its start, then waits (up to a minute) until `other` has started:
    it ends only when both run at once."""
    return (f"import os, pathlib, time\nd = pathlib.Path({str(marker_dir)!r})\n"
            f"(d / '{mine}').write_text(os.environ.get('OMP_NUM_THREADS', ''))\n"
            f"deadline = time.time() + 60\n"
            f"while not (d / '{other}').exists():\n"
            f"    assert time.time() < deadline, 'the other chapter never started: not side by side'\n"
            f"    time.sleep(0.1)")


def test_jobs_run_chapters_side_by_side_each_with_its_share_of_the_cores(tmp_path, capsys):
    markers = tmp_path / "markers"
    markers.mkdir()
    root = tmp_path / "book"
    for stem, other in [("01_a", "02_b"), ("02_b", "01_a")]:
        make_notebook(root / "notebooks" / f"{stem}.ipynb", _waits_for(markers, stem, other))
    first, second = runner.run(root, [], "smoke", 300, False, jobs=2)
    assert (first.chapter, second.chapter) == ("01_a", "02_b") and first.ok and second.ok, (first, second)
    share = str(max(1, os.cpu_count() // 2))
    assert [(markers / stem).read_text() for stem in ("01_a", "02_b")] == [share, share]
    assert all((root / "book" / "chapters" / f"{stem}.ipynb").exists() for stem in ("01_a", "02_b"))
    assert set(json.loads((root / "results" / "timings.json").read_text())) == {"01_a", "02_b"}
    assert not list((root / "book" / "chapters").glob(".*")) and "job 2 of 2" in capsys.readouterr().out
    (again,) = runner.run(root, ["01"], "smoke", 300, False, jobs=2)  # unchanged: not run, side by side or not
    assert again.unchanged


def test_jobs_start_nothing_new_after_a_failure_and_refuse_a_bad_count(root):
    failed = root / "book" / "chapters" / "02_bad.failed.ipynb"
    make_notebook(root / "notebooks" / "03_late.ipynb", "x = 1")
    make_notebook(root / "notebooks" / "01_ok.ipynb", (  # still running when 02 fails
        f"import pathlib, time\nwhile not pathlib.Path({str(failed)!r}).exists():\n    time.sleep(0.1)"))
    results = runner.run(root, ["02", "01", "03"], "smoke", 300, False, jobs=2)
    assert [(r.chapter, r.ok) for r in results] == [("02_bad", False), ("01_ok", True)]
    assert not (root / "book" / "chapters" / "03_late.ipynb").exists()
    for jobs in (0, 1.5):
        with pytest.raises(ValueError, match="--jobs must be a whole number"):
            runner.run(root, ["01"], "smoke", 300, False, jobs=jobs)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_kernel_that_never_started_gets_one_more_try(root, monkeypatch, capsys, jobs):
    """Kernels started side by side can race for ports: the loser dies before kernel_info."""
    real_launch, launched = runner._launch, []

    def first_kernel_dies(notebook, *args, **kwargs):
        run = real_launch(notebook, *args, **kwargs)
        launched.append(notebook.stem)
        if launched.count(notebook.stem) == 1:
            runner._kill_tree(run.proc)
            died = "RuntimeError: Kernel died before replying to kernel_info"
            output = subprocess.PIPE if run.log is None else open(run.log, "w")  # noqa: SIM115 (Popen owns it)
            run.proc = subprocess.Popen(["python3", "-c", f"print({died!r}); raise SystemExit(1)"],
                                        stdout=output, stderr=subprocess.STDOUT, text=True)
        return run

    monkeypatch.setattr(runner, "_launch", first_kernel_dies)
    make_notebook(root / "notebooks" / "03_late.ipynb", "x = 1")
    results = runner.run(root, ["01", "03"], "smoke", 300, False, jobs=jobs)
    assert sorted((r.chapter, r.ok) for r in results) == [("01_ok", True), ("03_late", True)]
    assert sorted(launched) == ["01_ok", "01_ok", "03_late", "03_late"]
    assert capsys.readouterr().out.count("its kernel did not start; trying once more") == 2
    launched.clear()  # a second death is a failure, said as such
    monkeypatch.setattr(runner, "_never_started", lambda error, log: False)
    results = runner.run(root, ["03"], "smoke", 300, False, force=True)
    assert not results[0].ok and "Kernel died before replying to kernel_info" in results[0].error


def test_jobs_interrupted_kill_every_chapter_and_leave_nothing_half_written(root, monkeypatch):
    make_notebook(root / "notebooks" / "02_bad.ipynb", "import time\ntime.sleep(600)")
    make_notebook(root / "notebooks" / "01_ok.ipynb", "import time\ntime.sleep(600)")
    killed, sleep = [], runner.time.sleep
    real_kill_tree = runner._kill_tree

    def interrupt_once(seconds):
        monkeypatch.setattr(runner.time, "sleep", sleep)
        sleep(3)  # both kernels have started
        raise KeyboardInterrupt

    def kill_tree(proc):
        killed.append(proc.pid)
        return real_kill_tree(proc)

    monkeypatch.setattr(runner.time, "sleep", interrupt_once)
    monkeypatch.setattr(runner, "_kill_tree", kill_tree)
    with pytest.raises(KeyboardInterrupt):
        runner.run(root, [], "smoke", 300, False, jobs=2)
    assert len(killed) == 2 and not list((root / "book" / "chapters").glob("*"))
    assert not list((root / "results" / ".staging").glob("*"))


def _tiny_book(path):
    """A book of two chapters that `nblib book` can build: an intro and a table of contents."""
    for stem in ("01_ok", "02_two"):
        notebook = make_notebook(path / "notebooks" / f"{stem}.ipynb",
                                 CLAIM_OK.replace("01_ok", stem).replace("ok/x", f"{stem}/x"))
        nb = nbformat.read(notebook, 4)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(f"# Chapter {stem}"))  # a page needs a title
        nbformat.write(nb, notebook)
    (path / "book").mkdir(exist_ok=True)
    (path / "book" / "intro.md").write_text("# A tiny book\n")
    (path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "- file: book/chapters/01_ok\n- file: book/chapters/02_two\n- file: book/claims\n")
    (path / "_config.yml").write_text("title: tiny\nexecute:\n  execute_notebooks: 'off'\n"
                                      "only_build_toc_files: true\n")
    return path


def test_chapters_run_in_two_folders_merge_into_one_book(tmp_path, capsys):
    one, two, book = (_tiny_book(tmp_path / name) for name in ("one", "two", "book"))
    assert runner.run(one, ["01"], "smoke", 300, False)[0].ok
    assert runner.run(two, ["02"], "smoke", 300, False)[0].ok
    with pytest.raises(RuntimeError, match="02_two has not been executed"):
        runner.build_book(one, page_check=False)
    assert cli.main(["--root", str(book), "merge", str(one), str(two)]) == 0
    assert "merged 2 chapter(s)" in capsys.readouterr().out
    for stem in ("01_ok", "02_two"):
        assert (book / "results" / f"{stem}.json").read_bytes() == (
            (one if stem == "01_ok" else two) / "results" / f"{stem}.json").read_bytes()
    assert set(json.loads((book / "results" / "timings.json").read_text())) == {"01_ok", "02_two"}
    index = runner.build_book(book, page_check=False)
    claims_page = (book / "_build" / "html" / "book" / "claims.html").read_text()
    assert index.exists() and "01_ok/x" in claims_page and "02_two/x" in claims_page


def test_merge_refuses_what_it_cannot_take_whole(tmp_path, capsys):
    one, book = _tiny_book(tmp_path / "one"), _tiny_book(tmp_path / "book")
    assert runner.run(one, ["01"], "smoke", 300, False)[0].ok
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["--root", str(book), "merge", str(empty)]) == 2
    assert "holds no executed chapter" in capsys.readouterr().err
    with pytest.raises(ValueError, match="01_ok is in both"):
        runner.merge(book, [one, one])
    chapters = one / "book" / "chapters"
    (chapters / "07_other.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="07_other.ipynb is not a chapter of this book"):
        runner.merge(book, [one])
    (chapters / "07_other.ipynb").unlink()
    claims_file = one / "results" / "01_ok.json"
    good = claims_file.read_text()
    claims_file.write_text("[{")
    with pytest.raises(RuntimeError, match="01_ok from .* cannot be read"):
        runner.merge(book, [one])
    claims_file.write_text(good)
    (chapters / "02_two.failed.ipynb").write_text("{}")
    with pytest.raises(RuntimeError, match="02_two failed in"):
        runner.merge(book, [one])
    assert not (book / "book" / "chapters").exists() or not list((book / "book" / "chapters").iterdir())


# ---- issue 33: full runs kept in a ledger in git, shown beside quick on the claims page

def test_a_full_run_is_kept_in_the_ledger_and_shown_beside_quick_until_the_chapter_changes(root, capsys):
    assert runner.run(root, ["01"], "full", 300, False)[0].ok
    entry_file = root / "ledger" / "01_ok" / "full-cpu.json"
    assert "recorded in ledger/01_ok/full-cpu.json" in capsys.readouterr().out
    entry = json.loads(entry_file.read_text())
    assert entry["chapter"] == "01_ok" and entry["profile"] == "full" and entry["device"] == "cpu"
    assert entry["claims"][0]["id"] == "ok/x" and entry["claims"][0]["passed"] and entry["seconds"] > 0
    assert {"commit", "date", "torch", "source", "registry"} <= entry.keys()

    def recorded_again(previous: dict, seconds: float) -> dict:
        """The entry after another full run with the published values, taking `seconds`."""
        entry_file.write_text(json.dumps(previous))
        ledger.record(root, "01_ok", "full", seconds)
        return json.loads(entry_file.read_text())

    again = recorded_again(entry | {"seconds": 600.0, "computed_seconds": 600.0}, 1.0)  # the same values, cached
    assert again["seconds"] == 1.0 and again["computed_seconds"] == 600.0, "a re-run keeps what computing cost"
    assert recorded_again(entry | {"claims": [], "computed_seconds": 600.0}, 1.0)["computed_seconds"] == 1.0
    assert recorded_again(entry | {"computed_seconds": 0.1}, 1.0)["computed_seconds"] == 1.0  # not faster
    entry = json.loads(entry_file.read_text())
    assert runner.run(root, ["01"], "quick", 300, False)[0].ok  # the book's run: not recorded
    assert json.loads(entry_file.read_text()) == entry
    text, _, _ = runner.claims_page(root)
    assert "| claim (ours; the paper) | quick (target; null) | at full | holds |" in text
    assert "| 1 (holds) |" in text and "the chapter has not changed since" in text
    make_notebook(root / "notebooks" / "01_ok.ipynb", CLAIM_OK + "\n# changed")
    assert "**stale**" in runner.claims_page(root)[0]
    entry_file.write_text("{")  # a damaged entry is shown as none
    assert "Not yet run at `full`" in runner.claims_page(root)[0]


def test_the_ledger_records_the_notebook_that_ran_not_one_edited_while_it_ran(root):
    path = root / "notebooks" / "01_ok.ipynb"
    edit = (f"import pathlib\np = pathlib.Path({str(path)!r})\n"
            "p.write_text(p.read_text().replace('seed = 0', 'seed = 0  # edited meanwhile'))")
    make_notebook(path, CLAIM_OK, edit)
    assert runner.run(root, ["01"], "full", 300, False)[0].ok
    assert "edited meanwhile" in path.read_text()
    assert "**stale**" in runner.claims_page(root)[0]


def test_record_keeps_any_profile_and_nothing_at_another_seed(root):
    assert runner.run(root, ["01"], "smoke", 300, False, record=True)[0].ok
    assert (root / "ledger" / "01_ok" / "smoke-cpu.json").exists()
    assert runner.run(root, ["01"], "full", 300, False, seed=1)[0].ok
    assert not (root / "ledger" / "01_ok" / "full-cpu.json").exists()


@pytest.mark.published
def test_the_page_shows_one_parameters_cell_the_values_the_chapter_ran_with(root):
    cells = json.loads((root / "book" / "chapters" / "01_ok.ipynb").read_text())["cells"]
    shown = [c for c in cells if "remove-cell" not in c["metadata"].get("tags", [])]
    parameters = [c for c in shown if {"parameters", "injected-parameters"} & set(c["metadata"].get("tags", []))]
    assert len(parameters) == 1 and 'profile = "smoke"' in "".join(parameters[0]["source"])
