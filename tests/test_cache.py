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


def test_memo_stores_frames_and_tensors_keyed_by_model_content(smoke):
    import pandas as pd

    model = nblib.mlp([2, 3, 1])
    frame = pd.DataFrame({"acc": [0.9, 0.5]}, index=pd.Index([0.0, 0.1], name="eps"))
    first = cache.memo("t-memo", lambda: (frame, {("pgd", 0.1): torch.arange(3)}), model=model)
    again = cache.memo("t-memo", lambda: pytest.fail("computed again"), model=model)
    assert again[0].equals(frame) and again[0].index.name == "eps"
    assert torch.equal(again[1]["pgd", 0.1], first[1]["pgd", 0.1])
    with torch.no_grad():
        model[1].weight += 1  # different weights → a different key
    assert cache.memo("t-memo", lambda: "recomputed", model=model) == "recomputed"


def test_keys_are_stable_across_processes():
    import subprocess
    import sys

    code = ("import nblib, torch; from nblib import cache, dann; torch.manual_seed(0); "
            "print(cache.key('k', schedule=dann.lr_schedule, model=nblib.mlp([2, 2]), x=torch.ones(2), n=3))")
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(keys) == 1
    assert cache.key("k", f=lambda p: 1.0) != cache.key("k", f=lambda p: 1 - p)
