import gzip

import numpy as np
import pytest
import torch

from nblib import data


def test_fashion_mnist_is_real_and_complete(fashion):
    train, test = fashion
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.x.min() >= 0 and train.x.max() == 1
    assert train.y.dtype == torch.int64 and set(train.y.tolist()) == set(range(10))
    assert train.classes[9] == "Ankle boot"
    assert (torch.bincount(train.y) == 6000).all()  # the published, balanced split


def test_second_load_comes_from_the_tensor_cache(fashion, monkeypatch):
    monkeypatch.setattr(data, "_fetch", lambda name: pytest.fail("read the sources again"))
    train, _ = data.load("fashion-mnist")
    assert torch.equal(train.y, fashion[0].y) and train.id == fashion[0].id


def test_digits_resized():
    train, test = data.load("digits")
    assert train.x.shape[1:] == (1, 28, 28) and len(train) + len(test) == 1797


def test_unknown_data_set():
    with pytest.raises(ValueError, match="fashion-mnist, mnist, digits, mnist-m"):
        data.load("cifar-100")


def test_no_source_fails_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "absent")

    def offline():
        raise OSError("network unreachable")
    offline.__doc__ = "torchvision download"
    monkeypatch.setitem(data.SOURCES, "fashion-mnist",
                        (data.FASHION_CLASSES, [data._from_user_dir("fashion-mnist"), data._from_debian, offline]))
    with pytest.raises(data.DataUnavailable) as error:
        data.load("fashion-mnist")
    message = str(error.value)
    assert "Debian package" in message and "network unreachable" in message and "apt-get install" in message
    assert not (tmp_path / "data" / "fashion-mnist.pt").exists()


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_user_data_dir_comes_first(monkeypatch, tmp_path, fashion):
    train, test = fashion
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for stem, tensor in [("train-images-idx3-ubyte", train.x[:50, 0]), ("train-labels-idx1-ubyte", train.y[:50]),
                         ("t10k-images-idx3-ubyte", test.x[:20, 0]), ("t10k-labels-idx1-ubyte", test.y[:20])]:
        array = (tensor * 255).round() if tensor.is_floating_point() else tensor
        _write_idx(folder / f"{stem}.gz", array.numpy())
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / "cache"))
    small_train, small_test = data.load("fashion-mnist")
    assert len(small_train) == 50 and len(small_test) == 20
    assert torch.allclose(small_train.x, train.x[:50]) and torch.equal(small_test.y, test.y[:20])


def test_corrupt_tensor_cache_is_rebuilt(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path))
    data.load("digits")
    path = tmp_path / "data" / "digits.pt"
    path.write_bytes(b"not a tensor file")
    train, _ = data.load("digits")
    assert "unreadable" in capsys.readouterr().out and len(train) == 1347
    assert torch.load(path, weights_only=True)["train_y"].shape == (1347,)


def test_subset_is_deterministic(fashion):
    a, b = fashion[0].subset(100, seed=1), fashion[0].subset(100, seed=1)
    assert torch.equal(a.y, b.y) and a.id == b.id != fashion[0].subset(100, seed=2).id


def test_sample_function():
    points = data.sample_function(torch.sin, 11)
    assert points.x.shape == (11, 1) and torch.allclose(points.y, torch.sin(points.x))
