import json

import pytest
import torch

import nblib
from nblib import claims, config


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
    assert record["passed"] is False and record["reported"] == "pre-registered; contradicted"
    assert "**no** (expected; reported)" in claims.findings("test_chapter").data
    assert nblib.claim("t/f", 0.06, ">=", 0.05, reported="pre-registered; contradicted")  # it may hold after all


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
