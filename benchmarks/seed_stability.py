"""Do the book's verdicts survive another seed? (issue 28: stability, measurable by anyone)

Runs the chosen chapters (default: all) at `quick` with chapter seeds 1 and 2 — each kept
apart from the book, in results/seed-N/ — and compares each with the book's own seed 0
(`nblib compare`): every claim's value and verdict side by side, then the asserted claims
that flipped. Writes the three comparisons to benchmarks/seed-stability.md, which the
repository keeps (the latest run's). Slow: the whole book twice, about 40 minutes on a
2-core CPU with a warm data cache; run it when the claims change, not in CI.

    .venv/bin/python benchmarks/seed_stability.py            # every chapter
    .venv/bin/python benchmarks/seed_stability.py 08 11      # some
    .venv/bin/python benchmarks/seed_stability.py --compare-only   # the results already there

Target: no asserted claim flips at seed 1 or 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from nblib import config, runner

SEEDS = (1, 2)


def chapter_seconds(results: Path, chapters: list[str]) -> float:
    """The seconds the chosen chapters' last runs took, from a results folder's timings."""
    timings = json.loads((results / runner.TIMINGS).read_text()) if (results / runner.TIMINGS).exists() else {}
    return sum(t["seconds"] for name, t in timings.items() if not chapters or any(name.startswith(c) for c in chapters))


def main(chapters: list[str], run: bool = True) -> int:
    root = config.project_root()
    results = config.results_dir(root)
    nblib = [sys.executable, "-m", "nblib.cli"]
    start = time.perf_counter()
    if run:
        subprocess.run([*nblib, "run", *chapters, "--keep-going"], check=False)  # seed 0: the book's, if stale
    sections, flipped = [], 0
    for seed in SEEDS:
        if run:
            subprocess.run([*nblib, "run", *chapters, "--keep-going", "--seed", str(seed)], check=False)
        text, flips = runner.compare(results, results / f"seed-{seed}")
        flipped += flips
        sections += [f"## Seed 0 against seed {seed}: {flips} asserted claim(s) flipped", "", "```", text, "```", ""]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    seconds = ", ".join(f"seed {seed} {chapter_seconds(runner.published(root, seed)[1], chapters):.0f} s"
                        for seed in (0, *SEEDS))
    header = [f"# Seed stability of the claims (profile quick, chapters: {' '.join(chapters) or 'all'})", "",
              f"Commit `{commit}`, {time.strftime('%Y-%m-%d')}, "
              + (f"{(time.perf_counter() - start) / 60:.0f} minutes in all" if run
                 else "no run: the results there compared")
              + f"; the chapters' last runs took {seconds} (a chapter whose models were cached runs in "
              f"seconds). Chapters with results at seed 0: "
              f"{', '.join(sorted(p.stem[:2] for p in results.glob('[0-9][0-9]_*.json')))}. "
              f"Written by `benchmarks/seed_stability.py`. {flipped} asserted verdict(s) flipped in all.",
              ""]
    (root / "benchmarks" / "seed-stability.md").write_text("\n".join(header + sections))
    print(f"{flipped} asserted verdict(s) flipped; benchmarks/seed-stability.md written")
    return 1 if flipped else 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    sys.exit(main([a for a in arguments if a != "--compare-only"], run="--compare-only" not in arguments))
