"""The results ledger: runs of a chapter kept in git, beside the paper's numbers.

`nblib run --profile full` (and any run with ``--record``) writes, for each chapter that
succeeded at the book's seed, ``ledger/<chapter>/<profile>-<device>.json``: every claim's
values and verdict, with the commit, date, device, torch version, seconds, the registry's
ids and a hash of the chapter's source (notebook and registry). The claims page shows a
chapter's latest `full` entry beside its quick numbers, marked stale when the chapter's
source has changed since. CI's quick runs are not recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from importlib import metadata
from pathlib import Path

from . import claims, config

LEDGER = "ledger"  # in the book's root, in git


def git_commit(root: Path) -> str:
    """The checkout's commit, short, read from ``.git`` (no git process); '' outside git."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head.removeprefix("ref: ")
            if (git / ref).exists():
                head = (git / ref).read_text().strip()
            else:  # a fresh clone keeps its refs packed
                head = next(line.split()[0] for line in (git / "packed-refs").read_text().splitlines()
                            if line.endswith(f" {ref}"))
    except (OSError, StopIteration):
        return ""
    return head[:7]


def source_hash(root: Path, chapter: str) -> str:
    """A hash of what the chapter itself is: its notebook and its claims registry."""
    registry = claims.registry_file(chapter, root)
    text = (root / "notebooks" / f"{chapter}.ipynb").read_bytes() + (
        registry.read_bytes() if registry.exists() else b"")
    return hashlib.sha256(text).hexdigest()[:16]


def entry_path(root: Path, chapter: str, profile: str, device: str) -> Path:
    """``ledger/<chapter>/<profile>-<device type>.json`` (cuda:1 → cuda)."""
    kind = re.sub(r"[^\w.-]", "-", device.split(":")[0]) or "unknown"
    return root / LEDGER / chapter / f"{profile}-{kind}.json"


def _read_entry(path: Path) -> dict | None:
    """An entry as written, or None when it is absent or damaged (never trusted then)."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("claims"), list) else None


def record(root: Path, chapter: str, profile: str, seconds: float, source: str | None = None,
           commit: str | None = None) -> Path | None:
    """Write the ledger entry of the chapter's published claims (seed 0's); None when it
    recorded none. ``seconds`` is this run's; ``computed_seconds`` that of the run that
    computed these values: a re-run that gives the very same values in less than half the
    time (its models and results served by the cache) keeps the earlier run's, so the
    ledger still says what the chapter costs; any other run gives its own. `source` and
    `commit` are the chapter's `source_hash` and the checkout's commit when the run began
    (default: now): a notebook edited while it ran must not pass for the one that ran."""
    records = claims.read_file(config.results_dir(root) / f"{chapter}.json")
    if not records:
        return None
    device = records[0].get("device", "unknown")
    measured = [{key: r.get(key) for key in ("id", "value", "values", "interval", "op", "target", "unit", "rule",
                                             "kind", "passed")} for r in records]
    path = entry_path(root, chapter, profile, device)
    previous = _read_entry(path)
    computed = seconds
    earlier = previous.get("computed_seconds", previous.get("seconds", 0.0)) if previous else 0.0
    same_values = previous is not None and json.dumps(previous["claims"]) == json.dumps(measured)  # NaN == NaN
    if same_values and seconds < earlier / 2:
        computed = earlier
    entry = {
        "chapter": chapter, "profile": profile, "device": device,
        "commit": git_commit(root) if commit is None else commit,
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "torch": metadata.version("torch"),
        "seconds": round(seconds, 1), "computed_seconds": round(computed, 1),
        "source": source_hash(root, chapter) if source is None else source,
        "registry": list(claims.registry(chapter, root) or {}), "claims": measured,
    }
    config.write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(entry, indent=1) + "\n"))
    return path


def latest(root: Path, chapter: str, profile: str = "full") -> dict | None:
    """The chapter's most recent entry at `profile` (any device), with ``stale`` set when
    its source has changed since; None if there is none or it cannot be read."""
    entries = [entry for path in sorted((root / LEDGER / chapter).glob(f"{profile}-*.json"))
               if (entry := _read_entry(path)) is not None]
    if not entries:
        return None
    entry = max(entries, key=lambda e: (e.get("date", ""), e.get("seconds", 0)))
    return entry | {"stale": entry.get("source") != source_hash(root, chapter)}
