"""nblib.pruning on a small CNN trained on real digits."""

import copy

import pytest
import torch

import nblib
from nblib import pruning


@pytest.fixture(scope="module")
def digits():
    return nblib.load("digits")


@pytest.fixture(scope="module")
def trained(digits):
    nblib.setup("test_pruning", "smoke", 0, device="cpu")
    model = nblib.cnn([8, 16])
    nblib.fit(model, digits[0], epochs=3, lr=0.05, batch_size=64, progress=False, device="cpu")
    return model


def test_global_magnitude_reaches_the_amount_and_spreads_it(trained):
    model = pruning.global_magnitude_(copy.deepcopy(trained), 0.8)
    report = pruning.sparsity(model)
    assert report["overall"] == pytest.approx(0.8, abs=1e-3)
    assert len(set(round(v, 2) for v in report["layers"].values())) > 1  # layers differ


def test_layerwise_prunes_every_layer_equally(trained):
    report = pruning.sparsity(pruning.layerwise_magnitude_(copy.deepcopy(trained), 0.5))
    assert all(v == pytest.approx(0.5, abs=0.01) for v in report["layers"].values())


def test_fine_tuning_keeps_pruned_weights_at_zero(trained, digits):
    model = pruning.global_magnitude_(copy.deepcopy(trained), 0.7)
    before = pruning.masks(model)
    nblib.fit(model, digits[0], epochs=1, lr=0.05, weight_decay=1e-3, progress=False, device="cpu")
    for name, m in pruning.prunable(model):
        assert (m.weight[before[name] == 0] == 0).all()
    pruning.make_permanent_(model)
    assert not any(k.endswith("_mask") for k in model.state_dict())
    assert pruning.sparsity(model)["overall"] == pytest.approx(0.7, abs=1e-3)


def test_pruning_a_pruned_model_stacks(trained):
    model = pruning.global_magnitude_(copy.deepcopy(trained), 0.5)
    pruning.global_magnitude_(model, 0.5)  # half of the remaining half
    assert pruning.sparsity(model)["overall"] == pytest.approx(0.75, abs=1e-3)


def test_prune_channels_returns_a_smaller_working_network(trained, digits):
    x = digits[1].x[:64]
    for global_pool in (True, False):
        model = nblib.cnn([8, 16], global_pool=global_pool).eval()
        assert torch.allclose(pruning.prune_channels(model, 0.0).eval()(x), model(x), atol=1e-5)
    thin = pruning.prune_channels(trained, 0.5).eval()
    assert nblib.count_params(thin) < nblib.count_params(trained) / 2
    assert thin(x).shape == (64, 10)
    assert [m.out_channels for m in thin if isinstance(m, torch.nn.Conv2d)] == [4, 8]


def test_size_report(trained):
    dense = pruning.size_report(trained)
    sparse = pruning.size_report(pruning.global_magnitude_(copy.deepcopy(trained), 0.8))
    assert sparse["dense_bytes"] == dense["dense_bytes"] == 4 * sum(t.numel() for t in trained.state_dict().values()
                                                                      if t.is_floating_point()) + 8 * 2
    assert sparse["sparse_bytes"] < 0.4 * sparse["dense_bytes"] and sparse["zlib_bytes"] < dense["zlib_bytes"]


def test_latencies_leave_the_models_alone_and_agree_with_torch_benchmark(trained):
    from torch.utils import benchmark

    trained.train()
    thin = pruning.prune_channels(trained, 0.5)
    batch = torch.rand(8, 1, 28, 28)
    threads = torch.get_num_threads()
    measured = pruning.latencies({"dense": trained, "thin": thin}, batch, min_run_time=0.1, threads=1)
    # the peer on one thread like the measurement: with torch's default threads, two pytest workers
    # oversubscribe the cores and a pass took 170x longer in CI
    peer = copy.deepcopy(trained).eval()
    with torch.inference_mode():
        reference = benchmark.Timer("model(batch)", globals={"model": peer, "batch": batch},
                                    num_threads=1).blocked_autorange(min_run_time=0.1)
    dense = measured["dense"]
    assert 1 / 3 < dense.median / reference.median < 3 and dense.iqr >= 0 and dense.threads == 1
    assert set(measured) == {"dense", "thin"} and measured["thin"].median > 0
    assert trained.training and thin.training and torch.get_num_threads() == threads
    trained.eval()


class _Logged(torch.nn.Module):
    """Calls `record(name)` on every forward pass (a function: deepcopy keeps it, not a copy)."""

    def __init__(self, name, record):
        super().__init__()
        self.name, self.record = name, record

    def forward(self, x):
        self.record(self.name)
        return x


def test_latencies_alternate_the_models_round_by_round():
    log = []

    def record(name):
        log.append(name)

    models = {name: _Logged(name, record) for name in "abc"}
    pruning.latencies(models, torch.zeros(1), min_run_time=1e-9, rounds=4)
    timed = log[-3 * 4:]  # one pass per block after the warm-ups: min_run_time asks for less than one
    assert [timed[i:i + 3] for i in range(0, 12, 3)] == [list("abc"), list("bca"), list("cab"), list("abc")]


@pytest.mark.parametrize("bad, message", [
    (dict(models={}), "at least one model"),
    (dict(rounds=2), "rounds must be at least 3"),
    (dict(min_run_time=0), "min_run_time must be positive"),
])
def test_latencies_refuse_bad_arguments(trained, bad, message):
    arguments = dict(models={"dense": trained}, batch=torch.rand(2, 1, 28, 28)) | bad
    with pytest.raises(ValueError, match=message):
        pruning.latencies(**arguments)


def test_mlp_stack_runs_each_network():
    nets = [nblib.mlp([12, 7, 5, 3]) for _ in range(3)]
    stack = pruning.MLPStack(nets)
    x = torch.randn(4, 12)
    out = stack(x)
    assert out.shape == (3, 4, 3)
    for net, logits, back in zip(nets, out, stack.unstack(), strict=False):
        torch.testing.assert_close(logits, net(x))
        torch.testing.assert_close(back(x), net(x))
    with pytest.raises(ValueError, match="same layer sizes"):
        pruning.MLPStack([nblib.mlp([12, 7, 3]), nblib.mlp([12, 8, 3])])


def test_mlp_stack_in_place_methods_change_the_stack_and_return_it():
    stack, other = (pruning.MLPStack([nblib.mlp([12, 7, 3]) for _ in range(3)]) for _ in range(2))
    masks = [(torch.rand_like(w) > 0.5).float() for w in stack.weights]
    assert stack.set_masks_(masks) is stack
    assert all((w[m == 0] == 0).all() for w, m in zip(stack.weights, masks, strict=True))
    stack(torch.randn(4, 12)).sum().backward()
    assert stack.mask_gradients_() is stack
    assert all((w.grad[m == 0] == 0).all() for w, m in zip(stack.weights, masks, strict=True))
    which = torch.tensor([True, False, True])
    assert stack.take_(other, which) is stack
    torch.testing.assert_close(stack.weights[0][:, 0], other.weights[0][:, 0])
    assert not torch.equal(stack.weights[0][:, 1], other.weights[0][:, 1])


def test_stacked_training_equals_separate_training_under_torch_masks(digits):
    """Two masked networks trained as one stack end where each ends trained alone with
    Adam on the same batches, its mask applied by torch.nn.utils.prune."""
    torch.manual_seed(0)  # the networks and masks: not whatever state the tests before left
    train = digits[0].subset(256, 0)
    nets = [nblib.mlp([784, 16, 10]) for _ in range(2)]
    layer_masks = [(torch.rand(784, 2, 16) > 0.5).float(), (torch.rand(16, 2, 10) > 0.3).float()]
    stack = pruning.MLPStack(copy.deepcopy(nets)).set_masks_(layer_masks)
    with nblib.train.progress_bar(0, enabled=False) as bar:
        pruning._train_stack(stack, train, train, epochs=2, lr=0.01, batch_size=32, eval_every=4,
                             generator=torch.Generator().manual_seed(7), bar=bar)
    for m, net in enumerate(nets):
        named = zip(pruning.prunable(net), layer_masks, strict=False)
        pruning.apply_masks_(net, {name: mask[:, m].T for (name, _), mask in named})
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        generator = torch.Generator().manual_seed(7)
        for _ in range(2):
            order = torch.randperm(len(train), generator=generator)
            for i in range(0, len(train), 32):
                batch = order[i:i + 32]
                loss = torch.nn.functional.cross_entropy(net(train.x[batch]), train.y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        for (_, layer), w in zip(pruning.prunable(net), stack.weights, strict=False):
            masked = layer.weight_orig * layer.weight_mask  # `layer.weight` is refreshed only by a forward pass
            torch.testing.assert_close(w[:, m].T, masked, atol=1e-5, rtol=1e-4)
            assert not w[:, m].T[layer.weight_mask == 0].any()  # masked weights stayed exactly zero


def test_lottery_tickets_rounds(digits):
    rows = pruning.lottery_tickets([784, 32, 10], digits[0], digits[1], digits[1], rounds=2, amount=0.5,
                                   seeds=(0, 1), epochs=2, lr=0.01, eval_every=10, device="cpu")
    steps = 2 * -(-len(digits[0]) // 60)
    assert [(r["round"], r["seed"]) for r in rows] == [(0, 0), (0, 1)] + [(k, s) for k in (1, 2) for s in (0, 1, 0, 1)]
    assert [r["arm"] for r in rows[2:6]] == ["reset ticket"] * 2 + ["random re-initialisation"] * 2
    assert [round(r["sparsity"], 2) for r in rows] == [0.0] * 2 + [0.5] * 4 + [0.75] * 4
    assert all(0 < r["test accuracy"] <= 1 and 0 < r["test accuracy at early stop"] <= 1 for r in rows)
    assert all(0 < r["early-stop step"] <= steps for r in rows)


def test_lottery_tickets_refuse_bad_arguments(digits):
    for bad, message in [(dict(rounds=-1), "rounds"), (dict(seeds=(1, 1)), "seeds"), (dict(amount=1.0), "amount")]:
        with pytest.raises(ValueError, match=message):
            pruning.lottery_tickets([784, 8, 10], digits[0], digits[1], digits[1], **{"rounds": 1, **bad})


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5])
def test_bad_amount(trained, amount):
    with pytest.raises(ValueError, match="amount"):
        pruning.global_magnitude_(copy.deepcopy(trained), amount)


def test_nothing_to_prune():
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        pruning.global_magnitude_(torch.nn.Sequential(torch.nn.ReLU()), 0.5)


def test_prune_channels_keeps_mode_and_layer_settings(digits):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=2, dilation=2, padding_mode="reflect"),
        torch.nn.BatchNorm2d(8, eps=1e-3, momentum=0.3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    for training in (True, False):
        thin = pruning.prune_channels(model.train(training), 0.5)
        assert all(m.training == training for m in thin.modules())
    conv, bn = thin[0], thin[1]
    assert (conv.dilation, conv.padding, conv.padding_mode) == ((2, 2), (2, 2), "reflect")
    assert (bn.eps, bn.momentum) == (1e-3, 0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    pruning.prune_channels(model, 0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched


def test_prune_channels_refuses_grouped_convolutions():
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2), torch.nn.Flatten())
    with pytest.raises(ValueError, match="grouped"):
        pruning.prune_channels(model, 0.5)


def test_in_place_pruning_says_so_and_returns_the_same_model(trained):
    model = copy.deepcopy(trained)
    assert pruning.global_magnitude_(model, 0.5) is model and pruning.sparsity(model)["overall"] > 0.49
