"""MNIST-M (Ganin et al. 2016): full MNIST blended with crops of real photographs that ship
offline, deterministically."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .sources import DIGIT_CLASSES, _cached_arrays, _tensor_sets, load
from .tensorset import TensorSet

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

