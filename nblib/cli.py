"""The ``nblib`` command: run chapters, build the book, fetch data, clean up."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from . import config, data, runner


def _cmd_run(args) -> int:
    results = runner.run(args.root, args.chapters, args.profile, args.timeout, args.keep_going)
    return 0 if results and all(r.ok for r in results) else 1


def _cmd_book(args) -> int:
    runner.build_book(args.root)
    return 0


def _cmd_data(args) -> int:
    for name in args.names or [*data.SOURCES, "mnist-m"]:
        data.load(name)
    return 0


def _cmd_clean(args) -> int:
    root = args.root
    for path in [root / "_build", root / "results", root / "book" / "claims.md"]:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for executed in (root / "book" / "chapters").glob("*.ipynb"):
        executed.unlink()
    if args.cache:
        shutil.rmtree(config.cache_dir(), ignore_errors=True)
    print("removed executed chapters, results and the built book" + (" and the model/data cache" if args.cache else ""))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nblib", description="Deep Learning Phenomena: run and build the book")
    p.add_argument("--root", type=Path, default=None, help="the book's root folder (default: found from here)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute chapter notebooks with papermill into book/chapters/")
    r.add_argument("chapters", nargs="*", help="e.g. 01 or 01_function_fitting (default: all)")
    r.add_argument("--profile", default="quick", help=f"one of {', '.join(config.PROFILES)} (default: quick)")
    r.add_argument("--timeout", type=float, default=1800, help="seconds allowed per chapter (default: 1800)")
    r.add_argument("--keep-going", action="store_true", help="run the remaining chapters after a failure")
    r.set_defaults(func=_cmd_run)
    b = sub.add_parser("book", help="write book/claims.md and build the HTML book with jupyter-book")
    b.set_defaults(func=_cmd_book)
    d = sub.add_parser("data", help="fetch or check the data sets")
    d.add_argument("names", nargs="*", help=f"default: all of {', '.join([*data.SOURCES, 'mnist-m'])}")
    d.set_defaults(func=_cmd_data)
    c = sub.add_parser("clean", help="remove executed chapters, results and the built book")
    c.add_argument("--cache", action="store_true", help="also remove cached models and data tensors")
    c.set_defaults(func=_cmd_clean)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.root = (args.root or config.project_root()).resolve()
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as error:
        print(f"nblib {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
