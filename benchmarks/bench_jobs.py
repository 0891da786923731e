"""`nblib run --jobs 2` against `--jobs 1`: does running chapters side by side help here?
(issue 32)

Runs every chapter at the chosen profile (default smoke: what `make test` runs) twice, in
two fresh copies of the book, each with its own empty model cache (the data tensors are
shared, read-only), once one chapter at a time and once N side by side, and writes the
wall-clock seconds to benchmarks/jobs.md. Run it on a quiet machine.

    .venv/bin/python benchmarks/bench_jobs.py            # smoke, --jobs 2 against 1
    .venv/bin/python benchmarks/bench_jobs.py quick 2
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nblib import config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import book_copy  # noqa: E402 (the copy the notebook tests build from)


def timed_book(profile: str, jobs: int, scratch: Path) -> float:
    """Seconds for `nblib run` of every chapter at `profile` with `jobs`, in a fresh copy
    of the book with an empty model cache."""
    (scratch / f"book-{jobs}").mkdir()
    root, cache = book_copy(scratch / f"book-{jobs}"), scratch / f"cache-{jobs}"
    cache.mkdir()
    for shared in ("data", "raw"):  # the data sets, already built: only the models start cold
        (cache / shared).symlink_to(config.cache_dir() / shared)
    (cache / config.CACHE_MARKER).touch()
    env = os.environ | {"NBLIB_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nblib.cli", "--root", str(root), "run", "--profile", profile,
                    "--jobs", str(jobs)], env=env, check=True)
    return time.perf_counter() - start


def main(profile: str = "smoke", jobs: int = 2) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        serial = timed_book(profile, 1, Path(scratch))
        side_by_side = timed_book(profile, jobs, Path(scratch))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    section = "\n".join([
        f"## `{profile}`", "",
        f"Every chapter at `{profile}`, each run with an empty model cache, on this machine "
        f"({os.cpu_count()} cores, commit `{commit}`, {time.strftime('%Y-%m-%d')}; "
        "`benchmarks/bench_jobs.py`):", "",
        "| jobs | seconds | speed-up |", "|---|---|---|",
        f"| 1 | {serial:.0f} | 1.00× |",
        f"| {jobs} | {side_by_side:.0f} | {serial / side_by_side:.2f}× |", ""])
    path = ROOT / "benchmarks" / "jobs.md"
    path.write_text(replace_section(path.read_text() if path.exists() else HEADER, profile, section))
    print(section)


HEADER = "# Chapters side by side: `nblib run --jobs`\n"


def replace_section(report: str, profile: str, section: str) -> str:
    """`report` with its section for `profile` (from its ``## `profile` `` heading to the
    next heading) replaced by `section`, or `section` appended."""
    lines, heading = report.splitlines(), f"## `{profile}`"
    if heading not in lines:
        return report.rstrip("\n") + "\n\n" + section
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    kept_after = "\n".join(lines[end:])
    return "\n".join(lines[:start]) + "\n" + section + ("\n" + kept_after + "\n" if kept_after else "")


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["smoke"]), *(int(a) for a in sys.argv[2:3]))
