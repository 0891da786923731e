import math

import pytest
import torch

import nblib
from nblib import models


def test_mlp_and_cnn_shapes():
    x = torch.rand(4, 1, 28, 28)
    assert nblib.mlp([784, 16, 10])(x).shape == (4, 10)
    assert nblib.cnn([4, 8, 8])(x).shape == (4, 10)
    assert nblib.cnn([4], global_pool=False, hidden=12)(x).shape == (4, 10)
    assert nblib.count_params(nblib.mlp([2, 3, 1])) == 2 * 3 + 3 + 3 + 1


def test_match_params_is_close():
    deep = models.match_params(lambda w: nblib.mlp([1] + [w] * 6 + [1]), 1000)
    wide = models.match_params(lambda w: nblib.mlp([1, w, 1]), 1000)
    assert abs(nblib.count_params(deep) - 1000) <= 100 and abs(nblib.count_params(wide) - 1000) <= 3


def test_fit_learns_real_digits(smoke):
    train, test = nblib.load("digits")
    h = nblib.fit(nblib.mlp([784, 64, 10]), train, test, epochs=5, lr=0.1, batch_size=64, progress=False)
    assert len(h.train_loss) == len(h.test_acc) == 5
    assert h.train_loss[-1] < h.train_loss[0] and h.test_acc[-1] > 0.85
    assert h.samples_per_s > 0


def test_fit_regression_has_no_accuracy(smoke):
    points = nblib.data.sample_function(torch.sin, 64)
    h = nblib.fit(nblib.mlp([1, 16, 1]), points, epochs=30, lr=1e-2, optimizer="adam", batch_size=16, progress=False)
    assert h.train_loss[-1] < h.train_loss[0] and math.isnan(h.train_acc[-1])


def test_nan_loss_names_the_epoch(smoke):
    train, _ = nblib.load("digits")
    with pytest.raises(FloatingPointError, match="epoch 1"):
        nblib.fit(nblib.mlp([784, 8, 10]), train, epochs=2, lr=1e12, momentum=0.0, progress=False)


def test_unknown_optimizer(smoke):
    train, _ = nblib.load("digits")
    with pytest.raises(ValueError, match="use one of sgd, adam"):
        nblib.fit(nblib.mlp([784, 8, 10]), train, optimizer="lbfgs", progress=False)


def test_predict_and_evaluate_restore_mode(smoke):
    train, _ = nblib.load("digits")
    model = nblib.cnn([4])
    model.train()
    loss, acc = nblib.evaluate(model, train)
    assert model.training and 0 <= acc <= 1 and loss > 0
    assert nblib.predict(model, train.x[:5]).shape == (5, 10) and model.training
