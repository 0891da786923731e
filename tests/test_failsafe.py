"""Issue 10: the runner and the command under interruption, concurrency and bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from nblib import cli, config, runner

from .conftest import make_notebook, needs_chromium, small_book_fixtures

SLEEPER = ('import os, time, nblib\nnblib.setup("03_sleep", profile, seed)\n'
           'open(os.environ["PIDFILE"], "w").write(str(os.getpid()))\ntime.sleep(600)')
CLAIM_OK = 'import nblib\nnblib.setup("01_ok", profile, seed)\nnblib.claim("ok/x", 1.0, ">", 0.5);'


def _book(path):
    make_notebook(path / "notebooks" / "01_ok.ipynb", CLAIM_OK)
    make_notebook(path / "notebooks" / "03_sleep.ipynb", SLEEPER)
    return path


_published_once, root = small_book_fixtures(_book)


def _nblib(root, *args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "nblib.cli", "--root", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def _wait_for(path, seconds=120):
    deadline = time.time() + seconds
    while not (path.exists() and path.read_text()):
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)
    return int(path.read_text())


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_the_whole_tree_and_keeps_the_last_good_outputs(root, tmp_path, sig):
    chapters = root / "book" / "chapters"
    chapters.mkdir(parents=True)
    (chapters / "03_sleep.ipynb").write_text("previous good copy")
    (root / "results").mkdir()
    (root / "results" / "03_sleep.json").write_text("[]")
    pidfile = tmp_path / "kernel.pid"
    run = _nblib(root, "run", "03", "--profile", "smoke", env={**os.environ, "PIDFILE": str(pidfile)})
    kernel = _wait_for(pidfile)
    family = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(sig)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 128 + sig and "stopped" in err
    deadline = time.time() + 10
    while not all(_gone(p) for p in [kernel, *(c.pid for c in family)]) and time.time() < deadline:
        time.sleep(0.2)
    assert _gone(kernel), "the kernel outlived the run"
    assert all(_gone(c.pid) for c in family), "papermill outlived the run"
    assert (chapters / "03_sleep.ipynb").read_text() == "previous good copy"
    assert (root / "results" / "03_sleep.json").read_text() == "[]"
    assert not list(chapters.glob(".*")) and not list((root / "results" / ".staging").glob("*"))


@pytest.mark.published
def test_a_second_run_refuses_while_one_is_running(root, tmp_path):
    published = (root / "results" / "01_ok.json").read_text()
    pidfile = tmp_path / "kernel.pid"
    first = _nblib(root, "run", "03", "--profile", "smoke", env={**os.environ, "PIDFILE": str(pidfile)})
    try:
        _wait_for(pidfile)
        second = _nblib(root, "run", "01", "--profile", "smoke")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2 and "another nblib run or book is working" in err and "pid" in err
        book = _nblib(root, "book")
        assert book.communicate(timeout=60)[1].count("another nblib run") == 1 and book.returncode == 2
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert (root / "results" / "01_ok.json").read_text() == published


def test_stale_temporary_files_are_cleaned_at_the_next_start(root):
    chapters, staging = root / "book" / "chapters", root / "results" / ".staging"
    chapters.mkdir(parents=True)
    staging.mkdir(parents=True)
    (chapters / ".07_x.running.ipynb").write_text("{}")
    (staging / "07_x.json").write_text("[]")
    assert runner.run(root, ["01"], "smoke", 300, False)[0].ok
    assert not (chapters / ".07_x.running.ipynb").exists() and not list(staging.glob("*"))


def test_a_chapter_without_claims_of_its_own_fails(tmp_path):
    make_notebook(tmp_path / "notebooks" / "05_copy.ipynb",
                  'import nblib\nnblib.setup("01_ok", profile, seed)\nnblib.claim("ok/x", 1.0, ">", 0.5)')
    (result,) = runner.run(tmp_path, ["05"], "quick", 300, False)
    assert not result.ok and "recorded no claims under its own name" in result.error and "'05_copy'" in result.error
    assert not (tmp_path / "results" / "01_ok.json").exists()  # nor published under the other name
    assert runner.run(tmp_path, ["05"], "smoke", 300, False)[0].ok  # smoke records, does not assert


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_timeout_must_be_positive(root, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--root", str(root), "run", "01", "--timeout", value])
    assert exit_.value.code == 2 and "positive number of seconds" in capsys.readouterr().err


def test_a_chapter_named_twice_runs_once(root, capsys):
    assert cli.main(["--root", str(root), "run", "01", "01_ok", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.count("running 01_ok") == 1


def test_a_root_without_chapters_is_an_error(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "run"]) == 2
    assert "is not the book's folder" in capsys.readouterr().err
    assert cli.main(["--root", str(tmp_path / "absent"), "run"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_cache_under_a_file_is_a_clear_error(root, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / "a-file" / "cache"))
    assert cli.main(["--root", str(root), "data", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nblib data: error:") and "Traceback" not in err


def test_clean_cache_refuses_a_folder_nblib_did_not_make(root, tmp_path, monkeypatch, capsys):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_text("precious")
    monkeypatch.setenv("NBLIB_CACHE", str(foreign))
    assert runner.run(root, ["01"], "smoke", 300, False)[0].ok
    assert cli.main(["--root", str(root), "clean", "--cache"]) == 2
    assert "refusing to delete" in capsys.readouterr().err
    assert (foreign / "holiday.jpg").exists() and (root / "book" / "chapters" / "01_ok.ipynb").exists()


def test_clean_deletes_only_what_nblib_wrote_in_the_results_folder(root, tmp_path, monkeypatch):
    shared = tmp_path / "shared-results"
    shared.mkdir()
    (shared / "notes.txt").write_text("someone else's")
    monkeypatch.setenv("NBLIB_RESULTS", str(shared))
    assert runner.run(root, ["01"], "smoke", 300, False)[0].ok and (shared / "01_ok.json").exists()
    assert cli.main(["--root", str(root), "clean"]) == 0
    assert (shared / "notes.txt").exists() and not (shared / "01_ok.json").exists()


def test_clean_cache_deletes_the_folder_nblib_made(root, tmp_path, monkeypatch):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / "made"))
    config.cache_dir()
    (tmp_path / "made" / "models").mkdir()
    assert (tmp_path / "made" / config.CACHE_MARKER).exists()
    assert cli.main(["--root", str(root), "clean", "--cache"]) == 0
    assert not (tmp_path / "made").exists()


def test_files_get_the_umask_mode_and_are_synced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    previous = os.umask(0o022)
    try:
        config.write_atomic(tmp_path / "f.json", lambda tmp: Path(tmp).write_text("{}"))
    finally:
        os.umask(previous)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644 and synced


def test_help_does_not_import_torch():
    code = "import sys, nblib.cli; nblib.cli.parser(); print('torch' in sys.modules, 'seaborn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_claims_of_a_failed_chapter_are_not_published(root):
    make_notebook(root / "notebooks" / "04_half.ipynb",
                  'import nblib\nnblib.setup("04_half", profile, seed)\nnblib.claim("h/x", 1.0, ">", 0.5)', "1 / 0")
    assert not runner.run(root, ["04"], "smoke", 300, False)[0].ok
    assert not (root / "results" / "04_half.json").exists()
    assert json.loads((root / "book" / "chapters" / "04_half.failed.ipynb").read_text())


# ---- issue 34: a run killed outright, clean in a folder that is not a book

OLD_CODE = ('import os, time, pathlib, nblib\nnblib.setup("03_sleep", profile, seed)\n'
            'open(os.environ["PIDFILE"], "w").write(str(os.getpid()))\n'
            'go = pathlib.Path(os.environ["GO"])\nwhile not go.exists():\n    time.sleep(0.1)\n'
            'nblib.claim("sleep/old-code", 1.0, ">", 0.5)')
NEW_CODE = ('import os, time, pathlib, nblib\nnblib.setup("03_sleep", profile, seed)\n'
            'pathlib.Path(os.environ["GO"]).touch()\ntime.sleep(3)\nnblib.claim("sleep/new-code", 1.0, ">", 0.5)')


def test_a_run_killed_outright_leaves_no_kernel_and_its_claims_never_reach_the_next_run(root, tmp_path,
                                                                                      monkeypatch):
    make_notebook(root / "notebooks" / "03_sleep.ipynb", OLD_CODE)
    monkeypatch.setenv("GO", str(tmp_path / "go"))
    first = _nblib(root, "run", "03", "--profile", "smoke", env={**os.environ, "PIDFILE": str(tmp_path / "kernel.pid")})
    kernel = _wait_for(tmp_path / "kernel.pid")
    args = psutil.Process(kernel).cmdline()
    connection = Path(args[args.index("-f") + 1])
    assert connection.is_relative_to(root / "results" / ".staging") and connection.exists()
    first.kill()  # SIGKILL: no handler runs
    first.communicate(timeout=60)
    deadline = time.time() + 15
    while not _gone(kernel) and time.time() < deadline:
        time.sleep(0.2)
    assert _gone(kernel), "the kernel of a killed run lives on"
    make_notebook(root / "notebooks" / "03_sleep.ipynb", NEW_CODE)
    assert runner.run(root, ["03"], "smoke", 300, False)[0].ok
    published = json.loads((root / "results" / "03_sleep.json").read_text())
    assert [r["id"] for r in published] == ["sleep/new-code"]
    assert not list((root / "results" / ".staging").iterdir()) and not connection.exists()


def test_the_next_run_stops_processes_a_killed_run_recorded(root, capsys):
    import psutil

    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (root / "results").mkdir()
        started = [[orphan.pid, psutil.Process(orphan.pid).create_time()], [1, 0.0]]  # pid 1: not the one recorded
        (root / "results" / ".run.lock").write_text(json.dumps({"pid": 999999, "since": "0", "started": started}))
        assert runner.run(root, ["01"], "smoke", 300, False)[0].ok
        assert _gone(orphan.pid)
        assert f"left running by an earlier run that was killed (pid {orphan.pid})" in capsys.readouterr().out
    finally:
        orphan.kill()
        orphan.wait()


@pytest.mark.published
def test_clean_keeps_files_of_the_results_folder_that_nblib_did_not_write(root):
    (root / "results" / "survey.json").write_text('{"answers": 12}')
    assert cli.main(["--root", str(root), "clean"]) == 0
    assert (root / "results" / "survey.json").read_text() == '{"answers": 12}'
    assert not (root / "results" / "01_ok.json").exists()


@pytest.mark.parametrize("how", ["--root", "working directory"])
def test_clean_refuses_a_folder_that_is_not_a_book(tmp_path, monkeypatch, capsys, how):
    for path, text in [("_build/index.html", "a user's site"), ("results/survey.json", "{}"),
                       ("book/chapters/notes.ipynb", "{}"), ("book/claims.md", "mine")]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    monkeypatch.delenv("NBLIB_ROOT")
    monkeypatch.chdir(tmp_path)
    argv = ["--root", str(tmp_path), "clean"] if how == "--root" else ["clean"]
    monkeypatch.setattr(config, "__file__", str(tmp_path / "site-packages" / "nblib" / "config.py"))  # not editable
    assert cli.main(argv) == 2
    assert "is not the book's folder" in capsys.readouterr().err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "_build/index.html", "book/chapters/notes.ipynb", "book/claims.md", "results/survey.json"]


def test_relative_folders_in_the_environment_mean_the_same_in_the_kernel(root, monkeypatch):
    assert runner.run(root, ["01"], "smoke", 300, False)[0].ok
    published = (root / "results" / "01_ok.json").read_text()
    monkeypatch.chdir(root)
    run = subprocess.run([sys.executable, "-m", "nblib.cli", "run", "01", "--profile", "smoke"], capture_output=True,
                         text=True, env={**os.environ, "NBLIB_ROOT": ".", "NBLIB_RESULTS": "elsewhere"})
    assert run.returncode == 0, run.stderr
    assert json.loads((root / "elsewhere" / "01_ok.json").read_text())[0]["id"] == "ok/x"
    assert not (root / "notebooks" / "elsewhere").exists()
    assert (root / "results" / "01_ok.json").read_text() == published  # the other folder's claims untouched


BOOK_WITH_A_SLOW_PAGE_CHECK = """
import subprocess, sys, time
from pathlib import Path
from nblib import pagecheck, runner

def slow_check(html, required):
    with pagecheck._chromium():
        print("chromium is up", flush=True)
        time.sleep(600)

runner.subprocess.run = lambda *a, **k: subprocess.CompletedProcess(a, 0)  # the pages are not the point
pagecheck.check_site = slow_check
runner.build_book(Path(sys.argv[1]))
"""


def _cmdline(process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


@needs_chromium
@pytest.mark.published
def test_sigterm_during_the_page_check_ends_chromium_and_removes_its_profile(root, tmp_path):
    import tempfile

    (root / "book" / "chapters" / "03_sleep.ipynb").write_text("{}")  # the sleeper, as if executed
    book = subprocess.Popen([sys.executable, "-c", BOOK_WITH_A_SLOW_PAGE_CHECK, str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while (line := book.stdout.readline()) and line.strip() != "chromium is up":
        pass
    assert line, book.communicate()[1]
    family = psutil.Process(book.pid).children(recursive=True)
    assert family, "no Chromium to stop"
    # this book's own profile, named on its Chromium's command line (another pytest worker's page
    # check may be making and removing profiles of its own meanwhile)
    profiles = {Path(arg.split("=", 1)[1]) for p in family for arg in _cmdline(p)
                if arg.startswith("--user-data-dir=")}
    assert profiles and all(p.parent == Path(tempfile.gettempdir()) for p in profiles)
    book.send_signal(signal.SIGTERM)
    book.communicate(timeout=60)
    deadline = time.time() + 10
    while not all(_gone(p.pid) for p in family) and time.time() < deadline:
        time.sleep(0.2)
    assert all(_gone(p.pid) for p in family), "Chromium or its driver outlived nblib book"
    assert not any(p.exists() for p in profiles), "the Chromium profile outlived nblib book"


@pytest.mark.parametrize("text", ["", "pid 12, since 10:04", "[1, 2]", '{"started": [1]}', '{"started": [["a", 0]]}'])
def test_a_lock_file_of_another_shape_records_nothing_to_kill(text):
    assert runner._kill_leftovers(text) == []
