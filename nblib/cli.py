"""The ``nblib`` command: run chapters, build the book, fetch data, clean up.

Only the standard library is imported up front (torch and friends load when a command
needs them), so ``nblib --help`` answers at once.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path

from . import config

PROFILES = ", ".join(config.PROFILES)


def _cmd_run(args) -> int:
    from . import runner

    results = runner.run(args.root, args.chapters, args.profile, args.timeout, args.keep_going, args.force,
                         config.check_seed(args.seed), args.jobs, record=args.record)
    return 0 if results and all(r.ok for r in results) else 1


def _cmd_compare(args) -> int:
    from . import runner

    text, flips = runner.compare(args.first, args.second)
    print(text)
    return 1 if flips else 0


def _cmd_merge(args) -> int:
    from . import runner

    merged = runner.merge(args.root, args.folders)
    print(f"merged {len(merged)} chapter(s) into {args.root}: {', '.join(merged)}")
    return 0


def _cmd_book(args) -> int:
    from . import runner

    runner.build_book(args.root, page_check=not args.no_page_check)
    return 0


def _cmd_data(args) -> int:
    from . import data

    for name in args.names or data.BOOK_DATA_SETS:
        if name == "imagenet-photos":  # 20 photos for a pretrained classifier, no train/test split
            data.imagenet_photos()
        else:
            data.load(name)
    return 0


def _cmd_clean(args) -> int:
    from . import runner

    cache = config.cache_dir(create=False) if args.cache else None
    if cache is not None and cache.exists() and not (cache / config.CACHE_MARKER).exists():
        raise RuntimeError(f"refusing to delete {cache}: nblib did not make it (no {config.CACHE_MARKER} file); "
                           "check $NBLIB_CACHE, or delete it by hand")
    root = args.root
    results = config.results_dir(root)
    chapters = runner.notebooks(root)
    with runner.exclusive(root):  # only what nblib writes: $NBLIB_RESULTS may hold other files, and the lock stays
        for path in [root / "_build", results / ".staging", results / "interactive", root / "book" / "claims.md",
                     root / "book" / runner.KEY_FINDINGS,
                     *results.glob("seed-[0-9]*"),
                     results / runner.TIMINGS, *(results / f"{nb.stem}{suffix}" for nb in chapters
                                                 for suffix in (".json", ".key")),
                     *(root / "book" / "chapters" / f"{nb.stem}{suffix}" for nb in chapters
                       for suffix in (".ipynb", ".failed.ipynb"))]:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if cache is not None and cache.exists():
        shutil.rmtree(cache)
    print("removed executed chapters, results and the built book" + (" and the model/data cache" if args.cache else ""))
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _whole(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, not {text}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nblib", description="Deep Learning Phenomena: run and build the book")
    p.add_argument("--root", type=Path, default=None, help="the book's root folder (default: found from here)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute chapter notebooks with papermill into book/chapters/")
    r.add_argument("chapters", nargs="*", help="e.g. 01 or 01_function_fitting (default: all)")
    r.add_argument("--profile", default="quick", help=f"one of {PROFILES} (default: quick)")
    r.add_argument("--timeout", type=_positive, default=1800, help="seconds allowed per chapter (default: 1800)")
    r.add_argument("--keep-going", action="store_true", help="run the remaining chapters after a failure")
    r.add_argument("--force", action="store_true",
                   help="run every chosen chapter, even one whose notebook, profile, nblib, packages and data "
                        "have not changed since its published copy was made")
    r.add_argument("--seed", type=int, default=0,
                   help="the chapters' seed; another than 0 keeps its results apart, in results/seed-N/ "
                        "(the book shows seed 0's)")
    r.add_argument("--jobs", type=_whole, default=1,
                   help="chapters run side by side, each in its own kernel with its share of the CPU cores "
                        "(and of the GPUs, when there are several); default 1")
    r.add_argument("--record", action="store_true",
                   help="keep the claims of each chapter that succeeds in the ledger (ledger/<chapter>/"
                        "<profile>-<device>.json, for git); always done at full")
    r.set_defaults(func=_cmd_run)
    m = sub.add_parser("compare", help="two result sets side by side (e.g. results results/seed-1): "
                                       "values, verdicts and the asserted claims that flipped")
    m.add_argument("first", type=Path)
    m.add_argument("second", type=Path)
    m.set_defaults(func=_cmd_compare)
    g = sub.add_parser("merge", help="bring chapters executed elsewhere (other checkouts, CI jobs' artifacts, "
                                     "each laid out as book/chapters/ and results/) into this book")
    g.add_argument("folders", nargs="+", type=Path)
    g.set_defaults(func=_cmd_merge)
    b = sub.add_parser("book", help="write book/claims.md, build the HTML book, check its pages in Chromium, report")
    b.add_argument("--no-page-check", action="store_true",
                   help="skip loading every built page in Chromium (for machines without it)")
    b.set_defaults(func=_cmd_book)
    d = sub.add_parser("data", help="fetch or check the data sets")
    d.add_argument("names", nargs="*", help="default: every data set the chapters use")
    d.set_defaults(func=_cmd_data)
    c = sub.add_parser("clean", help="remove executed chapters, results and the built book")
    c.add_argument("--cache", action="store_true", help="also remove cached models and data tensors")
    c.set_defaults(func=_cmd_clean)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        os.environ.update(config.absolute_paths(dict(os.environ)))  # once, before a kernel inherits them
        args.root = (args.root or config.project_root()).resolve()
        if not args.root.is_dir():
            raise ValueError(f"--root {args.root} is not a folder")
        if args.command not in ("data", "compare") and not config.is_book(args.root):
            raise ValueError(f"{args.root} is not the book's folder (it needs _toc.yml, _config.yml and "
                             "notebooks/NN_name.ipynb): run nblib in the book's folder, or give --root")
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"nblib {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP (runner.Stopped)
        signum = getattr(stop, "signum", 2)
        print(f"nblib {args.command}: stopped ({stop or 'Ctrl-C'}); the last good outputs are kept", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
