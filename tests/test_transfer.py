"""Transfer learning from EfficientNet-Lite0: features per layer, the trainable tail, probes."""

import pytest
import torch

from nblib import data, transfer
from nblib.data import TensorSet

CHANNELS = {"stage 2": 24, "stage 3": 40, "stage 4": 80, "stage 5": 112, "stage 6": 192, "stage 7": 320,
            "head": 1280}


def test_head_features_give_the_classifiers_logits(classifier, photos):
    x = photos.x[:4]
    computed = transfer.features(classifier, x, size=224, maps_before=11, progress=False)
    assert {layer: f.shape for layer, f in computed.items() if layer in CHANNELS} == {
        layer: (4, c) for layer, c in CHANNELS.items()}
    assert computed["block 11 input"].shape == (4, 112, 14, 14)
    with torch.inference_mode():
        logits = classifier(x)
        assert torch.allclose(classifier.net._fc(computed["head"]), logits, atol=1e-4)


def test_tail_from_cached_maps_reproduces_the_network(classifier, photos):
    x = photos.x[:3]
    maps = transfer.features(classifier, x, size=112, layers=("head",), maps_before=15,
                             progress=False)["block 15 input"]
    assert maps.shape == (3, 192, 3, 3)
    tail = transfer.Tail(classifier, 15, num_classes=1000)
    tail.classifier.load_state_dict(classifier.net._fc.state_dict())
    tail.train()  # BN keeps ImageNet's statistics, so train mode computes the same function
    assert not any(m.training for m in tail.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        assert torch.allclose(tail(maps), classifier(transfer.network_input(x, 112)), atol=1e-4)
    grads = torch.autograd.grad(tail(maps).sum(), list(tail.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_grey_images_are_repeated_to_three_channels(classifier):
    grey = torch.rand(2, 1, 28, 28)
    a = transfer.features(classifier, grey, size=64, layers=("stage 4",), progress=False)
    b = transfer.features(classifier, grey.expand(-1, 3, -1, -1), size=64, layers=("stage 4",), progress=False)
    assert torch.equal(a["stage 4"], b["stage 4"])


def test_wrong_mode_and_preprocessing_change_features_not_the_model(classifier, photos):
    x = photos.x[:8]
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    right = transfer.features(classifier, x, size=112, layers=("head",), progress=False)["head"]
    for kwargs in (dict(train_mode=True), dict(preprocess="torchvision imagenet"), dict(preprocess="none")):
        wrong = transfer.features(classifier, x, size=112, layers=("head",), progress=False, **kwargs)["head"]
        assert (wrong - right).abs().max() > 0.1, kwargs
    assert not classifier.training
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())
    again = [transfer.features(classifier, x, size=112, layers=("head",), progress=False, train_mode=True,
                               seed=s)["head"] for s in (3, 3, 4)]
    assert torch.equal(again[0], again[1]) and not torch.equal(again[0], again[2])  # drop-connect is seeded


@pytest.mark.parametrize("kwargs, message", [
    (dict(layers=("fc",)), "unknown layers"),
    (dict(layers=()), "unknown layers"),
    (dict(preprocess="imagenet"), "preprocess must be"),
    (dict(maps_before=16), "maps_before"),
    (dict(maps_before=0), "maps_before"),
    (dict(size=16), "size"),
])
def test_bad_arguments_are_refused(classifier, kwargs, message):
    with pytest.raises(ValueError, match=message):
        transfer.features(classifier, torch.rand(1, 3, 32, 32), **kwargs)


def test_images_outside_unit_range_and_wrong_shapes_are_refused(classifier):
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        transfer.features(classifier, torch.rand(1, 3, 32, 32) * 255)
    with pytest.raises(ValueError, match="N × 1 × H × W"):
        transfer.features(classifier, torch.rand(1, 2, 32, 32))
    with pytest.raises(TypeError, match="efficientnet_lite0"):
        transfer.features(classifier.net, torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="first_block"):
        transfer.Tail(classifier, 0, 10)


def test_linear_probe_on_real_digit_features(classifier):
    digits, _ = data.load("digits")
    train, test = digits.per_class(15, seed=0), digits.per_class(30, seed=1)
    computed = {name: transfer.feature_sets(s, transfer.features(classifier, s.x, size=64, layers=("stage 5",),
                                                                 progress=False), "64 px")["stage 5"]
                for name, s in (("train", train), ("test", test))}
    probe = transfer.linear_probe(computed["train"])
    assert probe.score(computed["test"].x.numpy(), computed["test"].y.numpy()) >= 0.6  # chance 0.1
    assert computed["train"].name.endswith("stage 5 (64 px)") and computed["train"].id != train.id


def test_per_class_is_balanced_nested_and_follows_the_labels(fashion):
    train, _ = fashion
    small, large = train.per_class(3, seed=2), train.per_class(10, seed=2)
    assert torch.bincount(small.y).tolist() == [3] * 10 and len(large) == 100
    rows = {tuple(r.flatten().tolist()) for r in large.x}
    assert all(tuple(r.flatten().tolist()) in rows for r in small.x)  # the same seed nests
    assert torch.equal(train.per_class(3, seed=2).x, small.x) and small.id != train.per_class(3, seed=3).id
    features = TensorSet(train.x.flatten(1)[:, :5], train.y, train.classes, "features")
    assert torch.equal(features.per_class(3, seed=2).x, small.x.flatten(1)[:, :5])
    with pytest.raises(ValueError, match="fewer than k"):
        small.per_class(4)
    with pytest.raises(ValueError, match="positive int"):
        train.per_class(0)
    with pytest.raises(ValueError, match="no class labels"):
        TensorSet(train.x[:4], torch.zeros(4, 1), [], "points").per_class(1)


def test_choose_layer_needs_two_samples_per_class(fashion):
    train, _ = fashion
    sets = {"a": TensorSet(train.x[:200].flatten(1)[:, :20], train.y[:200], train.classes, "a")}
    assert transfer.choose_layer(sets)[0] == "a"
    with pytest.raises(ValueError, match="at least 2 samples"):
        transfer.choose_layer({"a": sets["a"].per_class(1)})
