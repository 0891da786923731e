import functools
import os
import warnings

import pytest
import torch

import nblib
from nblib import cache, train


@pytest.fixture
def digits():
    return nblib.load("digits")


def _fit(name, data, **kw):
    torch.manual_seed(0)  # the same starting weights each call, so the same key
    model = nblib.mlp([784, 16, 10])
    return model, nblib.fit_cached(name, model, data[0], data[1], epochs=2, lr=0.1, progress=False, **kw)


def test_second_call_loads_instead_of_training(smoke, digits, monkeypatch):
    model, h = _fit("t-cache", digits)
    after_training = torch.rand(1)
    monkeypatch.setattr(cache, "fit", lambda *a, **k: pytest.fail("trained again"))
    nblib.setup("test_chapter", "smoke", 0, device="cpu")
    loaded, h2 = _fit("t-cache", digits)
    assert h2 == h
    pairs = zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert torch.equal(torch.rand(1), after_training)  # same random state whether trained or loaded


def test_key_depends_on_settings(smoke, digits):
    _fit("t-key", digits)
    files = set(cache.path_for("x").parent.glob("t-key-*.pt"))
    _fit("t-key", digits, batch_size=32)
    assert len(set(cache.path_for("x").parent.glob("t-key-*.pt")) - files) == 1


def test_corrupt_file_is_reported_and_retrained(smoke, digits):
    _, h = _fit("t-corrupt", digits)
    (path,) = cache.path_for("x").parent.glob("t-corrupt-*.pt")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        _, h2 = _fit("t-corrupt", digits)
    assert len(h2.train_loss) == len(h.train_loss) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit("t-corrupt", digits)  # the rewritten file loads cleanly


def test_interrupted_save_leaves_nothing(smoke, digits, monkeypatch):
    def interrupted(payload, f):
        with open(f, "wb") as half_written:
            half_written.write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(cache.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _fit("t-interrupt", digits)
    assert not list(cache.path_for("x").parent.glob("*t-interrupt*"))


def test_history_round_trip():
    h = train.History([1.0], [0.5], [1.1], [0.4], 2.0, 10.0)
    assert train.History.from_dict(h.to_dict()) == h


def _sweep(frame):
    return frame, {("pgd", 0.1): torch.arange(3)}


def test_memo_stores_frames_and_tensors_keyed_by_model_content(smoke, monkeypatch):
    import pandas as pd

    model = nblib.mlp([2, 3, 1])
    frame = pd.DataFrame({"acc": [0.9, 0.5]}, index=pd.Index([0.0, 0.1], name="eps"))
    first = cache.memo("t-memo", lambda: _sweep(frame), model=model)
    monkeypatch.setattr(cache, "_encode", lambda v: pytest.fail("computed again"))
    again = cache.memo("t-memo", lambda: _sweep(frame), model=model)  # the same computation: loaded
    assert again[0].equals(frame) and again[0].index.name == "eps"
    assert torch.equal(again[1]["pgd", 0.1], first[1]["pgd", 0.1])
    monkeypatch.undo()
    with torch.no_grad():
        model[1].weight += 1  # different weights → a different key
    assert cache.memo("t-memo", lambda: "recomputed", model=model) == "recomputed"


def _notebook(code: str):
    """A module made from `code`, as a notebook's cells make `__main__`."""
    import types

    module = types.ModuleType("a_notebook")
    exec(code, module.__dict__)
    return module


def test_memo_follows_the_globals_a_helper_reads(smoke):
    notebook = _notebook("SCALE = 2\ndef helper():\n    return SCALE * 10\ncompute = lambda: helper()")
    assert cache.memo("t-memo-global", notebook.compute) == 20
    notebook.SCALE = 3
    assert cache.memo("t-memo-global", notebook.compute) == 30  # not the stored 20


def test_a_global_read_by_a_function_inside_a_part_is_keyed_and_attributes_are_not_globals():
    notebook = _notebook("TRAIN = {'lr_decay': 0.9}\nx = 1\n"
                         "def decay(p):\n    return TRAIN['lr_decay'] ** p\n"
                         "def first(data):\n    return data.x[0]\n")
    before = cache.key("k", fit={"schedule": notebook.decay}, read=notebook.first)
    notebook.x = 2  # `data.x` reads an attribute, not the global x
    assert cache.key("k", fit={"schedule": notebook.decay}, read=notebook.first) == before
    notebook.TRAIN = {"lr_decay": 0.5}
    assert cache.key("k", fit={"schedule": notebook.decay}, read=notebook.first) != before


def test_a_global_read_changes_the_file_not_the_random_numbers(smoke):
    notebook = _notebook("import torch\nSCALE = 1\ncompute = lambda: torch.rand(1).item() * SCALE")
    first = cache.memo("t-memo-seed", notebook.compute)
    notebook.SCALE = 2
    assert cache.memo("t-memo-seed", notebook.compute) == pytest.approx(2 * first)  # recomputed, same draw


def test_a_global_generator_is_keyed_by_its_state(smoke):
    notebook = _notebook("import torch\nRNG = torch.Generator().manual_seed(1)\n"
                         "compute = lambda: torch.rand(1, generator=RNG).item()")
    first = cache.memo("t-memo-rng", notebook.compute)
    notebook.RNG.manual_seed(2)
    assert cache.memo("t-memo-rng", notebook.compute) != first
    notebook.RNG.manual_seed(1)
    assert cache.memo("t-memo-rng", notebook.compute) == first


def test_a_global_that_cannot_be_keyed_is_named(smoke):
    notebook = _notebook("class Opaque:\n    pass\nTHING = Opaque()\ncompute = lambda: str(THING)[:3]")
    with pytest.raises(TypeError, match="reads the global 'THING', which cannot be keyed"):
        cache.memo("t-memo-opaque", notebook.compute)


def test_memo_recomputes_after_the_computation_changes(smoke):
    assert cache.memo("t-memo-code", lambda: 1) == 1
    assert cache.memo("t-memo-code", lambda: 2) == 2  # edited: not the stored 1


def test_keys_see_closures_defaults_and_helpers():
    def schedule(k):
        return lambda p: k * p
    assert cache.key("k", f=schedule(1)) != cache.key("k", f=schedule(2))
    assert cache.key("k", f=lambda p, k=1: k * p) != cache.key("k", f=lambda p, k=2: k * p)
    assert cache.key("k", f=functools.partial(max, 1)) != cache.key("k", f=functools.partial(max, 2))
    assert cache.key("k", f=lambda: _helper()) == cache.key("k", f=lambda: _helper())


def _helper():
    return 1


def test_a_helper_edit_changes_the_key(monkeypatch):
    before = cache.key("k", f=lambda: _helper())
    monkeypatch.setitem(globals(), "_helper", lambda: 2)  # the notebook's helper redefined
    assert cache.key("k", f=lambda: _helper()) != before


def test_model_keys_see_shapes_and_names():
    a, b = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(4, 1, bias=False)
    for m in (a, b):
        torch.nn.init.zeros_(m.weight)  # the same four values, in other shapes
    assert cache.fingerprint(a) != cache.fingerprint(b)
    assert cache.fingerprint(torch.zeros(2, 3)) != cache.fingerprint(torch.zeros(3, 2))
    assert cache.fingerprint(torch.zeros(2)) != cache.fingerprint(torch.zeros(2, dtype=torch.float64))
    named = [torch.nn.Sequential(torch.nn.Linear(2, 2)),
             torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(2, 2))]
    named[1][1].load_state_dict(named[0][0].state_dict())  # the same values under other names
    assert cache.fingerprint(named[0]) != cache.fingerprint(named[1])


def test_an_address_in_a_key_is_refused():
    class Opaque:
        pass
    with pytest.raises(TypeError, match="memory address"):
        cache.key("k", thing=Opaque())


def test_keys_are_stable_across_processes():
    import subprocess
    import sys

    code = ("import nblib, torch; from nblib import cache, dann; torch.manual_seed(0)\n"
            "def nested(p):\n    return sum(i * p for i in range(3)) if p in {'a', 'b', 'c', 'd'} else 0\n"
            "print(cache.key('k', schedule=dann.lr_schedule, model=nblib.mlp([2, 2]), x=torch.ones(2), n=3, "
            "f=nested, g=lambda p: [q for q in (p, p)]))")
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}).stdout
            for hash_seed in (1, 2, 3)}  # set constants iterate in another order under each
    assert len(keys) == 1
    assert cache.key("k", f=lambda p: 1.0) != cache.key("k", f=lambda p: 1 - p)


def test_hit_and_miss_leave_the_model_alike(smoke, digits, monkeypatch):
    monkeypatch.setenv("NBLIB_DEVICE", "meta")  # what pick_device() would say: not where fit trained
    for _ in range(2):  # a miss, then a hit
        model, _ = _fit("t-device", digits, device="cpu")
        assert next(model.parameters()).device == torch.device("cpu") and not model.training


def test_a_cache_file_for_another_model_is_retrained(smoke, digits):
    _, h = _fit("t-wrong", digits)
    (path,) = cache.path_for("x").parent.glob("t-wrong-*.pt")
    for payload in ({"state": {"0.weight": torch.zeros(3)}, "extras": h.to_dict()},  # other shapes
                    {"state": {}, "extras": h.to_dict()},  # missing keys
                    {"extras": h.to_dict()}):  # no weights at all
        torch.save(payload, path)
        with pytest.warns(UserWarning, match="does not match"):
            model, h2 = _fit("t-wrong", digits)
        assert h2.train_loss == h.train_loss and model[1].weight.abs().sum() > 0


def test_two_names_train_with_different_seeds(smoke, digits):
    _, a = _fit("t-seed-a", digits)
    _, b = _fit("t-seed-b", digits)  # same model, data and settings: only the name differs
    assert a.train_loss != b.train_loss
