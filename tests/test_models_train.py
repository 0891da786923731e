import copy
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
    assert h.samples_per_s == pytest.approx(5 * len(train) / h.seconds)


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


def test_channels_last_changes_layout_not_values_and_restores_it(smoke):
    train, _ = nblib.load("digits")
    model = nblib.cnn([4, 8])
    conv = [m for m in model if isinstance(m, torch.nn.Conv2d)][1].weight  # 4 input channels: the orders differ
    expected = nblib.predict(model, train.x[:64])
    with nblib.train.channels_last(model):
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        with nblib.train.channels_last(model):  # nested: the outer order stays
            pass
        assert not conv.is_contiguous()
        torch.testing.assert_close(model.eval()(train.x[:64]), expected)
    assert conv.is_contiguous()
    nblib.predict(model, train.x[:8])
    assert conv.is_contiguous()  # predict hands the model back as it found it


def test_channels_last_keeps_a_pruned_first_conv_channels_last(smoke):
    # torch's pruning hook recomputes the weight each forward; with one input channel the
    # product came out contiguous and the whole first block ran in the slow order
    train, _ = nblib.load("digits")
    model = nblib.pruning.global_magnitude_(nblib.cnn([4, 8]), 0.5)
    expected = nblib.predict(model, train.x[:64])
    x = train.x[:64].contiguous(memory_format=torch.channels_last)
    with nblib.train.channels_last(model), torch.no_grad():
        first_block = model[1](model[0](x))
        assert first_block.is_contiguous(memory_format=torch.channels_last) and not first_block.is_contiguous()
        torch.testing.assert_close(model.eval()(x), expected)
    assert not model[0]._forward_pre_hooks or all(  # only torch's own pruning hook is left
        isinstance(h, torch.nn.utils.prune.BasePruningMethod) for h in model[0]._forward_pre_hooks.values())


@pytest.fixture
def digits():
    return nblib.load("digits")


@pytest.mark.parametrize("bad, error, message", [
    (dict(epochs=0), ValueError, "epochs must be a whole number >= 1"),
    (dict(batch_size=0), ValueError, "batch_size must be a whole number >= 1"),
    (dict(lr=float("nan")), ValueError, "lr must be a finite number > 0"),
    (dict(lr=float("inf")), ValueError, "lr must be a finite number > 0"),
    (dict(lr=-0.1), ValueError, "lr must be a finite number > 0"),
    (dict(momentum=1.5), ValueError, "momentum must be in"),
    (dict(schedule="linear"), ValueError, "unknown schedule 'linear'; use one of cosine, constant"),
    (dict(optimizer="lbfgs"), ValueError, "unknown optimizer 'lbfgs'; use one of sgd, adam"),
])
def test_fit_refuses_bad_settings_before_training(smoke, digits, bad, error, message):
    model = nblib.mlp([784, 8, 10])
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(error, match=message):
        nblib.fit(model, digits[0], progress=False, **bad)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_fit_refuses_bad_data(smoke, digits):
    train = digits[0]
    with pytest.raises(TypeError, match="int64 class indices .* or floating-point"):
        nblib.fit(nblib.mlp([784, 8, 10]), nblib.TensorSet(train.x, train.y.int()), progress=False)
    shorter = nblib.TensorSet(train.x, train.y)
    shorter.y = train.y[:-5]  # changed after construction
    with pytest.raises(ValueError, match="1347 inputs but 1342 labels"):
        nblib.fit(nblib.mlp([784, 8, 10]), shorter, progress=False)
    with pytest.raises(ValueError, match="train is empty"):
        nblib.fit(nblib.mlp([784, 8, 10]), nblib.TensorSet(train.x[:0], train.y[:0]), progress=False)
    with pytest.raises(TypeError, match="TensorSet"):
        nblib.fit(nblib.mlp([784, 8, 10]), (train.x, train.y), progress=False)


def test_a_nan_loss_names_its_cause(smoke, digits):
    x = digits[0].x.clone()
    x[3, 0, 5, 5] = float("nan")
    with pytest.raises(FloatingPointError, match="inputs contain NaN"):
        nblib.fit(nblib.mlp([784, 8, 10]), nblib.TensorSet(x, digits[0].y), epochs=1, progress=False)


def test_nesterov_is_an_explicit_choice():
    from nblib.train import make_optimizer
    params = [torch.nn.Parameter(torch.zeros(2))]
    cpu = torch.device("cpu")
    assert make_optimizer("sgd", params, 0.1, 0.9, 0.0, True, cpu).defaults["nesterov"]
    assert not make_optimizer("sgd", params, 0.1, 0.9, 0.0, False, cpu).defaults["nesterov"]
    assert not make_optimizer("sgd", params, 0.1, 0.0, 0.0, True, cpu).defaults["nesterov"]  # no momentum
    assert make_optimizer("sgd", params, 0.1, 0.9, 0.0, True, cpu).defaults["fused"]


def test_match_params_that_cannot_match_is_an_error():
    with pytest.raises(ValueError, match="cannot match 2 parameters"):
        models.match_params(lambda w: nblib.mlp([1, w, 1]), 2, max_width=64)
    with pytest.raises(ValueError, match="cannot match 10,000,000 parameters"):
        models.match_params(lambda w: nblib.mlp([1, w, 1]), 10_000_000, max_width=64)


def test_predict_returns_on_the_input_device(smoke, digits):
    # a second device on any machine: "meta" tensors have shapes but no values
    out = nblib.predict(nblib.mlp([784, 8, 10]).to("meta"), digits[1].x[:7].to("meta"))
    assert out.device == torch.device("meta") and out.shape == (7, 10)


def test_fit_together_trains_each_net_as_it_would_alone(smoke):
    # the stack's copies see the same batches; Adam is elementwise, so each copy follows the
    # path it would follow alone with that batch order
    points = [nblib.data.sample_function(f, 200, name=n) for n, f in (("sin", torch.sin), ("square", torch.square))]
    torch.manual_seed(0)
    nets = [nblib.mlp([1, 16, 16, 1]) for _ in points]
    alone = [copy.deepcopy(net) for net in nets]
    histories = nblib.fit_together("test-together", nets, points, epochs=3, lr=3e-3, batch_size=50,
                                   optimizer="adam", device="cpu")
    seed = nblib.cache._seed_of(next(nblib.cache.path_for("x").parent.glob("test-together-*.pt")).stem)
    for net, single, data, history in zip(nets, alone, points, histories, strict=True):
        torch.manual_seed(seed)  # the batch order fit_together's training drew
        solo = nblib.fit(single, data, epochs=3, lr=3e-3, batch_size=50, optimizer="adam", device="cpu",
                         progress=False)
        torch.testing.assert_close(nblib.predict(net, data.x), nblib.predict(single, data.x), rtol=1e-4, atol=1e-5)
        assert history.train_loss == pytest.approx(solo.train_loss, rel=1e-4)
    again = nblib.fit_together("test-together", [nblib.mlp([1, 16, 16, 1]) for _ in points], points, epochs=3,
                               lr=3e-3, batch_size=50, optimizer="adam", device="cpu")
    assert again[0].train_loss != histories[0].train_loss  # other starting weights: trained, not loaded


def test_fit_together_refuses_mismatched_inputs(smoke):
    a = nblib.data.sample_function(torch.sin, 50, name="a")
    b = nblib.data.sample_function(torch.sin, 60, name="b")
    with pytest.raises(ValueError, match="one data set per network"):
        nblib.fit_together("bad", [nblib.mlp([1, 4, 1])], [a, a])
    with pytest.raises(ValueError, match="same x"):
        nblib.fit_together("bad", [nblib.mlp([1, 4, 1]) for _ in range(2)], [a, b])


def test_label_smoothing_trains_on_smoothed_targets(smoke, digits):
    train = digits[0].subset(64, 0)
    steps = {}
    for smoothing in (0.0, 0.2):
        torch.manual_seed(0)
        model = nblib.mlp([784, 8, 10])
        start = copy.deepcopy(model)
        nblib.fit(model, train, epochs=1, lr=0.1, batch_size=64, momentum=0.0, label_smoothing=smoothing,
                  progress=False)
        # one plain SGD step on the whole batch: weights moved by lr × the smoothed loss's gradient
        loss = torch.nn.functional.cross_entropy(start(train.x), train.y, label_smoothing=smoothing)
        loss.backward()
        expected = [p - 0.1 * p.grad for p in start.parameters()]
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), expected, strict=True))
        steps[smoothing] = expected
    assert not torch.allclose(steps[0.0][-1], steps[0.2][-1])


def test_until_train_acc_stops_once_fitted(smoke, digits):
    h = nblib.fit(nblib.mlp([784, 64, 10]), digits[0], epochs=50, lr=0.1, batch_size=64, until_train_acc=0.9,
                  progress=False)
    assert len(h.train_acc) < 50 and h.train_acc[-1] >= 0.9 > max(h.train_acc[:-1], default=0)


@pytest.mark.parametrize("bad, message", [
    (dict(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
    (dict(until_train_acc=0.0), r"until_train_acc must be in \(0, 1\]"),
])
def test_classification_options_are_checked(smoke, digits, bad, message):
    with pytest.raises(ValueError, match=message):
        nblib.fit(nblib.mlp([784, 8, 10]), digits[0], progress=False, **bad)
    points = nblib.data.sample_function(torch.sin, 16)
    with pytest.raises(TypeError, match="for classification"):
        nblib.fit(nblib.mlp([1, 4, 1]), points, progress=False, label_smoothing=0.1)


def test_mlp_dropout_after_each_hidden_layer():
    net = nblib.mlp([784, 16, 16, 10], dropout=0.5)
    assert [type(m).__name__ for m in net] == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout",
                                               "Linear"]
    assert net[:-1](torch.rand(3, 1, 28, 28)).shape == (3, 16)
    with pytest.raises(ValueError, match="dropout must be in"):
        nblib.mlp([4, 2], dropout=1.0)


def test_strided_cnn_is_wong_et_al_mnist_network():
    net = nblib.models.strided_cnn()
    assert nblib.count_params(net) == (16 * 16 + 16) + (32 * 16 * 16 + 32) + (32 * 7 * 7 * 100 + 100) + (100 * 10 + 10)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_cyclic_schedule_rises_to_the_full_rate_at_two_fifths_then_falls_to_zero():
    cyclic = nblib.train.SCHEDULES["cyclic"]
    assert [cyclic(p) for p in (0.0, 0.2, 0.4, 0.7, 1.0)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    train, _ = nblib.load("digits")
    history = nblib.fit(nblib.mlp([784, 16, 10]), train, epochs=2, lr=0.01, optimizer="adam",
                        schedule="cyclic", progress=False, device="cpu")
    assert len(history.train_loss) == 2 and history.train_loss[-1] < history.train_loss[0]
