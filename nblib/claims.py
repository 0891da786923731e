"""Claims: a chapter's findings, recorded and checked.

``claim("random-labels/train-acc", acc, ">=", 0.95, ref="Zhang et al. 2017: 100%")``
appends the finding, with the profile, the device and the data it was measured on, to
``<chapter>.json`` in `nblib.config.claims_dir()` (``nblib run`` publishes it as
``results/<chapter>.json``; a chapter run by hand writes to ``results/interactive/``). At
the ``quick`` and ``full`` profiles a claim that does not hold raises `ClaimFailed` after
it has been recorded, so the run fails and the record says why; at ``smoke`` it is only
recorded.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path

from . import config

OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class ClaimFailed(AssertionError):
    pass


def results_file(chapter: str) -> Path:
    """Where the running chapter's claims are recorded."""
    return config.claims_dir() / f"{chapter}.json"


RECORD_FIELDS = {"id": str, "value": (int, float), "op": str, "target": (int, float), "passed": bool}


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


def describe_data(records: list[dict]) -> list[str]:
    """'mnist/train: 10,000 of 60,000 (a subset) from …', one line per data set."""
    return [f"{d['name']}: {d['size']:,}" + (f" of {d['of']:,} (a subset)" if d["size"] < d["of"] else "")
            + f" from {d['source']}" for d in records]


def paper_beside_ours(record: dict) -> str:
    """The paper's number, with a warning when ours was measured on a subset of a data set."""
    parts = [f"{d['name']} {d['size']:,} of {d['of']:,}" for d in record.get("data", []) if d["size"] < d["of"]]
    if record["ref"] and parts:
        return f"{record['ref']} (ours on a subset: {', '.join(parts)})"
    return record["ref"]


def claim(id: str, value: float, op: str, target: float, ref: str = "", statement: str = "",
          data: list | None = None, setting: str = "", reported: str = "") -> bool:
    """Record that ``value op target`` (e.g. ``0.93 >= 0.9``) and check it.

    `ref` gives the paper's own number and its setting; `statement` says the finding in
    words; `setting` says ours (model, ε, seeds…); `data` lists the `TensorSet`s it was
    measured on (default: every data set the chapter has loaded or subsampled so far). A
    claim with the same id replaces the earlier record. Returns whether it held.

    `reported` turns the check off, for one case only: an expectation written down before
    the experiment ran, which the measurement contradicted. Give the reason; the claim is
    recorded and shown as not holding (the chapter's prose must say so), never hidden.
    """
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    run = config.current()
    value, target = float(value), float(target)
    passed = bool(OPERATORS[op](value, target))
    record = {"id": id, "statement": statement, "setting": setting, "value": value, "op": op, "target": target,
              "passed": passed, "reported": reported, "ref": ref, "profile": run.profile, "device": str(run.device),
              "data": config.data_used() if data is None else [d.provenance() for d in data]}
    records = [r for r in read_file(results_file(run.chapter)) if r["id"] != id] + [record]
    text = json.dumps(records, indent=1)
    config.write_atomic(results_file(run.chapter), lambda tmp: Path(tmp).write_text(text))
    asserted = run.asserts_claims and not reported
    mark = "PASS" if passed else ("FAIL" if asserted else f"fail (not asserted: {reported or 'smoke'})")
    print(f"[{mark}] {id}: {value:.4g} {op} {target:.4g}" + (f"   (paper: {ref})" if ref else ""))
    if not passed and asserted:
        raise ClaimFailed(f"claim {id!r} does not hold: {value:.4g} {op} {target:.4g}")
    return passed


def findings(chapter: str | None = None):
    """The chapter's findings table (Markdown): each claim's finding, ours (measured value
    against its target, setting, data), the paper's number and setting, and whether it held."""
    from IPython.display import Markdown

    rows = ["| finding | ours | paper | holds |", "|---|---|---|---|"]
    for r in read_file(results_file(chapter or config.current().chapter)):
        data = "; ".join(f"{d['name'].split('[')[0]} {d['size']:,}" + (f" of {d['of']:,}" if d["size"] < d["of"]
                                                                        else "") for d in r.get("data", []))
        ours = "; ".join(filter(None, [f"{r['value']:.4g} ({r['op']} {r['target']:.4g})", r.get("setting", ""),
                                       data and f"data: {data}"]))
        rows.append(f"| {md_cell(r['statement'] or r['id'])} | {md_cell(ours)} | {md_cell(r['ref']) or '—'} | "
                    f"{'yes' if r['passed'] else '**no**'}{' (expected; reported)' if r.get('reported') else ''} |")
    return Markdown("\n".join(rows))


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (MyST reads $…$ as maths)."""
    return text.replace("|", "\\|").replace("$", "\\$")


def summary(chapter: str | None = None):
    """The claims recorded for `chapter` (default: the running one) as a table."""
    import pandas as pd

    records = [r | {"ref": paper_beside_ours(r)} for r in read_file(results_file(chapter or config.current().chapter))]
    columns = ["id", "statement", "value", "op", "target", "passed", "ref"]
    return pd.DataFrame(records, columns=columns).set_index("id")
