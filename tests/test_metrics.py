"""nblib.metrics on known cases and on a real classifier's logits, cross-checked against torchmetrics."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassCalibrationError

import nblib
from nblib import metrics


@pytest.fixture(scope="module")
def digit_logits():
    """Logits of a small MLP trained briefly on scikit-learn's real digits, on their test split."""
    nblib.setup("test_chapter", "smoke", 0, device="cpu")
    train, test = nblib.load("digits")
    model = nblib.mlp([784, 32, 10])
    nblib.fit(model, train, epochs=3, lr=0.1, batch_size=64, progress=False)
    return nblib.predict(model, test.x), test.y


def test_ece_of_known_cases():
    y = torch.tensor([0, 1, 0, 1])
    sure_and_right = torch.tensor([[9.0, -9.0], [-9.0, 9.0], [9.0, -9.0], [-9.0, 9.0]])
    assert metrics.expected_calibration_error(sure_and_right, y) == pytest.approx(0, abs=1e-6)
    # confidence 0.7 on every sample, right on half: one bin, gap 0.2
    seven_to_three = torch.log(torch.tensor([[0.7, 0.3]])).repeat(4, 1)
    assert metrics.expected_calibration_error(seven_to_three, y) == pytest.approx(0.2)
    table = metrics.reliability_table(seven_to_three, y, bins=4)
    assert table["count"].tolist() == [0, 0, 4, 0]  # 0.7 lies in (0.5, 0.75]
    assert table.loc[2, "accuracy"] == 0.5 and table.loc[2, "confidence"] == pytest.approx(0.7)
    assert math.isnan(table.loc[0, "accuracy"])


def test_ece_equals_torchmetrics_on_a_real_classifier(digit_logits):
    logits, y = digit_logits
    for bins in (5, 15):
        for scale in (0.3, 1.0, 3.0):  # under-, as trained, overconfident
            theirs = MulticlassCalibrationError(num_classes=10, n_bins=bins, norm="l1")(logits * scale, y)
            assert metrics.expected_calibration_error(logits * scale, y, bins) == pytest.approx(theirs.item(),
                                                                                                abs=1e-5)


def test_fit_temperature_recovers_a_planted_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 10, generator=g) * 4
    for planted in (0.5, 2.5):
        y = torch.multinomial((logits / planted).softmax(1), 1, generator=g).squeeze(1)
        assert metrics.fit_temperature(logits, y) == pytest.approx(planted, rel=0.05)


def test_temperature_minimises_nll_and_keeps_accuracy(digit_logits):
    logits, y = digit_logits
    t = metrics.fit_temperature(logits, y)
    best = metrics.nll(logits / t, y)
    assert best <= min(metrics.nll(logits / (t * f), y) for f in (0.9, 1.1)) + 1e-6
    assert metrics.accuracy(logits / t, y) == metrics.accuracy(logits, y)
    assert metrics.nll(logits, y) == pytest.approx(F.cross_entropy(logits, y).item())


def test_class_separation_tells_clusters_from_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(100)
    centres = torch.eye(3) * 10
    tight = centres[y] + torch.randn(300, 3, generator=g) * 0.5
    mixed = torch.randn(300, 3, generator=g)
    assert metrics.class_separation(tight, y) > 0.8 > 0.1 > metrics.class_separation(mixed, y)


@pytest.mark.parametrize("logits, y, error, message", [
    (torch.zeros(4), torch.zeros(4, dtype=torch.long), ValueError, "logits must be N × classes"),
    (torch.zeros(4, 3), torch.zeros(4), TypeError, "labels must be int64 class indices, not torch.float32"),
    (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), ValueError, "labels must be 4 class indices"),
    (torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]), ValueError, r"labels must lie in \[0, 2\]"),
])
def test_bad_inputs_are_named(logits, y, error, message):
    for f in (metrics.expected_calibration_error, metrics.fit_temperature, metrics.accuracy):
        with pytest.raises(error, match=message):
            f(logits, y)


def test_bad_bins():
    with pytest.raises(ValueError, match="bins must be >= 1"):
        metrics.reliability_table(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), bins=0)


def test_over_seeds_summarises_each_group_in_order():
    import pandas as pd

    runs = pd.DataFrame({"model": ["b", "b", "a", "a"], "seed": [0, 1, 0, 1], "acc": [0.5, 0.7, 0.9, 0.8]})
    table = metrics.over_seeds(runs, "model")
    assert list(table.index) == ["b", "a"] and list(table.columns) == [("acc", s) for s in ("mean", "min", "max")]
    assert table.loc["b", ("acc", "mean")] == pytest.approx(0.6) and table.loc["a", ("acc", "min")] == 0.8
    assert list(metrics.over_seeds(runs, "model", "acc", stats=("max", "count")).columns) == ["max", "count"]
    with pytest.raises(ValueError, match="no column 'recipe'"):
        metrics.over_seeds(runs, "recipe")
