"""Transfer learning from an ImageNet network (chapter 05): EfficientNet-Lite0's features
at several depths, computed once per image set and cached, for linear probes; and the
network's last stages as a trainable tail that fine-tunes from cached feature maps.

EfficientNet-Lite0 (`nblib.pretrained`) has a stem, 16 MBConv blocks in 7 stages (Tan &
Le 2019, Table 1) and a 1×1 head convolution to 1,280 channels. A *layer* here is the
output of a stage (its last block) or of the head, averaged over space: an N × channels
feature matrix. Images are N × 1 or N × 3 in [0, 1]; grey ones are repeated to three
channels and all are resized to ``size`` × ``size`` (the network was trained at 224).
"""

from __future__ import annotations

import copy
import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorSet
from .pretrained import ImageNetClassifier
from .train import progress_bar

# the index of each stage's last block (stage 1 is a single block at full resolution)
STAGE_END = {"stage 2": 2, "stage 3": 4, "stage 4": 7, "stage 5": 10, "stage 6": 14, "stage 7": 15}
LAYERS = (*STAGE_END, "head")


def _lite(x: torch.Tensor) -> torch.Tensor:
    return (x * 255 - 127) / 128


def _imagenet_mean_std(x: torch.Tensor) -> torch.Tensor:
    mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


# what the network's first layer is given: its own preprocessing, and two common mistakes
PREPROCESSING = {
    "efficientnet-lite": _lite,  # (255·x − 127)/128, as the weights were trained
    "torchvision imagenet": _imagenet_mean_std,  # the mean/std most torchvision models want
    "none": lambda x: x,  # pixels in [0, 1] as they are
}


def network_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """N × 1 or N × 3 images in [0, 1] → N × 3 × size × size (bilinear, antialiased).

    Args: `images` N × 1 × H × W or N × 3 × H × W; `size` the side in pixels.
    Returns: N × 3 × size × size float32, on the images' device."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be N × 1 × H × W or N × 3 × H × W, got {tuple(images.shape)}")
    x = images.expand(-1, 3, -1, -1).float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def _check(classifier: ImageNetClassifier, images: torch.Tensor, size: int, layers, preprocess: str,
           maps_before: int | None) -> None:
    if not isinstance(classifier, ImageNetClassifier):
        raise TypeError(f"expected nblib.pretrained.efficientnet_lite0(), got {type(classifier).__name__}")
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an int of at least 32 pixels, got {size!r}")
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or not layers:
        raise ValueError(f"unknown layers {unknown}; choose from {list(LAYERS)}")
    if preprocess not in PREPROCESSING:
        raise ValueError(f"preprocess must be one of {list(PREPROCESSING)}, got {preprocess!r}")
    blocks = len(classifier.net._blocks)
    if maps_before is not None and not (isinstance(maps_before, int) and 0 < maps_before < blocks):
        raise ValueError(f"maps_before must be a block index in 1..{blocks - 1}, got {maps_before!r}")
    if images.numel() and not (images.min() >= 0 and images.max() <= 1):
        raise ValueError("images must be in [0, 1] (the preprocessing is applied here): got values in "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}]")


def features(classifier: ImageNetClassifier, images: torch.Tensor, size: int = 224, layers=LAYERS,
             preprocess: str = "efficientnet-lite", maps_before: int | None = None, train_mode: bool = False,
             batch_size: int = 64, desc: str = "features", progress: bool = True,
             seed: int = 0) -> dict[str, torch.Tensor]:
    """The spatial mean of each layer's output, ``{layer: N × channels}``; with
    `maps_before` = k also the feature map entering block k, under ``"block k input"``
    (N × C × h × w, the input of `Tail`). Computed in batches under inference mode on
    the classifier's device, returned on the images' device. `preprocess` and
    ``train_mode=True`` (batch statistics in BN, drop-connect on, its random draws seeded
    by `seed`; run on a copy, so the classifier is not changed) exist to show what the
    wrong choice costs.

    Args: `classifier` `nblib.pretrained.efficientnet_lite0()`; `images` N × 1 or N × 3 × H × W in
    [0, 1]; `size` ≥ 32; `layers` names from `LAYERS`; `preprocess` a key of `PREPROCESSING`;
    `maps_before` a block index in 1 … 15; `batch_size` images per pass; `desc`, `progress` the bar.
    Returns: ``{layer: N × channels}`` (and ``{"block k input": N × C × h × w}``), on the images' device.
    Example: ``feats = features(classifier, test.x, size=112, layers=["stage 5", "head"])``."""
    _check(classifier, images, size, layers, preprocess, maps_before)
    net = copy.deepcopy(classifier.net).train() if train_mode else classifier.net
    device = next(net.parameters()).device
    wanted = {STAGE_END[layer]: layer for layer in layers if layer != "head"}
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    maps_key = f"block {maps_before} input"
    if maps_before is not None:
        out[maps_key] = []
    was_training = net.training
    net.train(train_mode)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.inference_mode(), progress_bar(len(images), desc, progress) as bar:
            torch.manual_seed(seed)
            for i in range(0, len(images), batch_size):
                x = PREPROCESSING[preprocess](network_input(images[i:i + batch_size].to(device), size))
                x = net._swish(net._bn0(net._conv_stem(x)))
                for index, block in enumerate(net._blocks):
                    if index == maps_before:
                        out[maps_key].append(x.to(images.device))
                    rate = net._global_params.drop_connect_rate * index / len(net._blocks)
                    x = block(x, drop_connect_rate=rate if train_mode else None)
                    if index in wanted:
                        out[wanted[index]].append(x.mean((2, 3)).to(images.device))
                if "head" in layers:
                    head = net._swish(net._bn1(net._conv_head(x)))
                    out["head"].append(head.mean((2, 3)).to(images.device))
                bar.update(len(x))
    finally:
        net.train(was_training)
    return {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in out.items()}


def feature_sets(images: TensorSet, computed: dict[str, torch.Tensor], how: str) -> dict[str, TensorSet]:
    """`features`' output as TensorSets with `images`' labels, named after the images
    and `how` they were computed (so caches and claims tell them apart).

    Args: `images` the TensorSet the features were computed from; `computed` `features`' output for
    it; `how` a short description of the settings.
    Returns: ``{layer: TensorSet}``: x the layer's features, y and classes those of `images`."""
    sets = {}
    for layer, x in computed.items():
        change = f"{layer} ({how})"
        digest = hashlib.sha1(f"{images.id}/{change}".encode()).hexdigest()[:16]
        sets[layer] = TensorSet(x, images.y, images.classes, f"{images.name}/{change}", images.source, images.of,
                                digest)
    return sets


class Tail(nn.Module):
    """EfficientNet-Lite0 from block `first_block` on (copies of its blocks and head, BN
    statistics frozen at ImageNet's) and a new linear classifier: fine-tunes the last
    stages on the cached maps that enter `first_block` (`features(maps_before=...)`)."""

    def __init__(self, classifier: ImageNetClassifier, first_block: int, num_classes: int):
        super().__init__()
        net = classifier.net
        if not 0 < first_block < len(net._blocks):
            raise ValueError(f"first_block must be in 1..{len(net._blocks) - 1}, got {first_block}")
        self.blocks = copy.deepcopy(net._blocks[first_block:])
        self.head = copy.deepcopy(nn.Sequential(net._conv_head, net._bn1, net._swish))
        self.classifier = nn.Linear(net._fc.in_features, num_classes)

    def train(self, mode: bool = True) -> Tail:
        """Train mode for everything but batch norm, whose ImageNet statistics stay fixed:
        a few hundred digits would be poor estimates of them.

        Args: `mode` True for training, False for eval.
        Returns: the module."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits from the feature maps that enter block `first_block`.

        Shape: N × C × h × w (``features(maps_before=first_block)``'s ``"block k input"``) → N × num_classes."""
        for block in self.blocks:
            maps = block(maps)
        return self.classifier(self.head(maps).mean((2, 3)))


def linear_probe(train: TensorSet, c: float = 1.0, tol: float = 1e-3, max_iter: int = 1000, fit: bool = True):
    """A multinomial logistic regression on standardised features (scikit-learn; `c` the
    inverse L2 strength; `tol` 10× scikit-learn's default: on chapter 05's features up to
    6× faster, test accuracies within 2.5 points of the default's),
    fitted to `train` unless ``fit=False``: the classifier of a linear probe.
    ``.score(x, y)`` gives accuracy.

    Args: `train` a TensorSet of N × D features (any device: fitted on a CPU copy) and class labels;
    `c`, `tol`, `max_iter` LogisticRegression's ``C``, ``tol`` and ``max_iter``.
    Returns: a scikit-learn Pipeline (StandardScaler, LogisticRegression) taking numpy arrays.
    Example: ``linear_probe(train).score(test.x.numpy(), test.y.numpy())``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, tol=tol, max_iter=max_iter))
    return probe.fit(train.x.cpu().numpy(), train.y.cpu().numpy()) if fit else probe


def choose_layer(train_sets: dict[str, TensorSet], folds: int = 3, seed: int = 0) -> tuple[str, dict[str, float]]:
    """The layer whose linear probe scores best in `folds`-fold cross-validation on the
    training labels alone (no test image is looked at; fewer folds when a class has fewer
    samples), and every layer's score.

    Args: `train_sets` ``{layer: TensorSet}`` of N × D features with int64 labels (`feature_sets`' output);
    `folds` ≥ 2; `seed` shuffles the folds.
    Returns: (the best layer's name, ``{layer: mean cross-validated accuracy}``)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    smallest = min(int(torch.bincount(train.y).min()) for train in train_sets.values())
    if smallest < 2:
        raise ValueError(f"cross-validation needs at least 2 samples of every class, got {smallest}")
    splits = StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed)
    scores = {}
    for layer, train in train_sets.items():
        x, y = train.x.cpu().numpy(), train.y.cpu().numpy()
        scores[layer] = float(cross_val_score(linear_probe(train, fit=False), x, y, cv=splits).mean())
    return max(scores, key=scores.get), scores
