"""The `TensorSet`: a data set as in-memory tensors that knows where it came from."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import config


def content_hash(*tensors: torch.Tensor) -> str:
    """A hash of the tensors' shapes, dtypes and every value (two tensors with the same
    bytes in other shapes differ).

    Args: `tensors` any number, any device (copied to the CPU to hash).
    Returns: 16 hex digits, a str."""
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
        """Name, source and size (and the size of the whole set, for a subset): what a claim records.

        Returns: ``{"name", "source", "size", "of"}``."""
        return {"name": self.name, "source": self.source, "size": len(self), "of": self.of}

    def subset(self, n: int, seed: int = 0) -> TensorSet:
        """`n` samples drawn without replacement, the same ones for the same seed. The
        subset says so (``of``), and claims made after it is drawn record it. `n` at least
        the set's size gives the whole set.

        Args: `n` a positive int; `seed` of the draw.
        Returns: a new TensorSet (this one itself when `n` ≥ its size)."""
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
        from these images picks the same rows; a smaller `k` picks a subset of a larger one's.

        Args: `k` a positive int, at most the smallest class's count; `seed` of the draw.
        Returns: a new TensorSet of k · classes samples, in random order (needs int64 labels and `classes`)."""
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
        """``(subset(n, seed), the rest)``: two disjoint parts, e.g. training and validation.

        Args: `n` in 1 … len − 1; `seed` of the draw.
        Returns: two new TensorSets, of n and len − n samples."""
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
        Zhang et al. 2017's partially corrupted labels; the same ones for the same seed.

        Args: `fraction` in [0, 1]; `seed` of the draws.
        Returns: a new TensorSet with the same images (shared, not copied) and new int64 labels."""
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
        the classes stay learnable but the images lose their spatial structure.

        Args: `seed` of the permutation.
        Returns: a new TensorSet, images of the same shape, same labels."""
        order = torch.randperm(self.x[0].numel(), generator=torch.Generator().manual_seed(seed))
        x = self.x.flatten(1)[:, order].reshape(self.x.shape)
        return self._derived(x, self.y, f"shuffled pixels@{seed}")

    def with_gaussian_pixels(self, seed: int = 0) -> TensorSet:
        """Images replaced by Gaussian noise with the set's pixel mean and standard
        deviation, labels kept (Zhang et al. 2017's "Gaussian"): nothing left to learn
        from, only to memorise.

        Args: `seed` of the noise.
        Returns: a new TensorSet, noise images of the same shape and dtype, same labels."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.x.shape, generator=g, dtype=self.x.dtype) * self.x.std() + self.x.mean()
        return self._derived(x, self.y, f"gaussian pixels@{seed}")

    def standardised(self, mean: float, std: float) -> TensorSet:
        """``(x − mean) / std`` (same name; a new cache id): give every split the training
        set's mean and std.

        Args: `mean` a finite number; `std` a finite number > 0.
        Returns: a new TensorSet."""
        if not math.isfinite(mean):
            raise ValueError(f"mean must be a finite number, got {mean}")
        if not (std > 0 and math.isfinite(std)):
            raise ValueError(f"std must be > 0 and finite, got {std}")
        return self._derived((self.x - mean) / std, self.y, f"standardised({mean!r}, {std!r})", renamed=False)

    def rgb(self) -> TensorSet:
        """Greyscale images repeated to three channels (to share a network with colour ones).

        Returns: a TensorSet of N × 3 × H × W images (an expanded view of N × 1 × H × W ones, not a
        copy), or this one itself when it has three channels already."""
        if self.x.shape[1] == 3:
            return self
        digest = hashlib.sha1(f"{self.id}/rgb".encode()).hexdigest()[:16]
        return TensorSet(self.x.expand(-1, 3, -1, -1), self.y, self.classes, f"{self.name}/rgb", self.source,
                         self.of, digest)



def sample_function(f: Callable[[torch.Tensor], torch.Tensor], n: int, lo: float = 0.0, hi: float = 1.0,
                    name: str = "") -> TensorSet:
    """`n` evenly spaced points of y = f(x) on [lo, hi], shaped n×1, for regression.

    Args: `f` a function of an n × 1 float32 tensor, elementwise; `n` points; `lo`, `hi` the interval;
    `name` the set's (default: ``f.__name__``).
    Returns: a TensorSet, x n × 1 float32, y ``f(x)`` as float32, no classes."""
    name = name or getattr(f, "__name__", "f")
    x = torch.linspace(lo, hi, n).unsqueeze(1)
    return TensorSet(x, f(x).float(), [], name, f"y = {name}(x) at {n} evenly spaced points on [{lo}, {hi}]")
