"""The offline ImageNet classifier and the 20 ImageNet photos it is tested on."""

import numpy as np
import pytest
import skimage.data
import torch
from captum.attr import IntegratedGradients

from nblib import data, saliency


def test_classifier_names_the_cat_and_most_photos(classifier, photos):
    cat = torch.from_numpy(np.array(skimage.data.chelsea())).permute(2, 0, 1).float()[None] / 255
    cat = torch.nn.functional.interpolate(cat, size=(224, 224), mode="bilinear", antialias=True)
    names = data.imagenet_classes()
    with torch.inference_mode():
        assert names[classifier(cat).argmax(1).item()] == "Egyptian cat"
        correct = (classifier(photos.x).argmax(1) == photos.y).float().mean().item()
    assert correct >= 0.8  # 17 of 20 here
    assert len(names) == 1000 and photos.x.shape == (20, 3, 224, 224)
    assert photos.x.min() >= 0 and photos.x.max() <= 1


def test_classifier_rejects_wrong_shapes(classifier):
    with pytest.raises(ValueError, match="N × 3 × H × W"):
        classifier(torch.zeros(1, 1, 224, 224))


def test_grad_cam_on_the_head_has_its_resolution(classifier, photos):
    x, y = photos.x[:2], photos.y[:2]
    cam = saliency.grad_cam(classifier, x, y, classifier.last_conv_activation, upsample=False)
    assert cam.shape == (2, 1, 7, 7) and cam.max() > 0


def test_integrated_gradients_on_the_photos_match_captum(classifier, photos):
    """Chapter 06's path (black to the photo) and quadrature on EfficientNet-Lite0, against
    captum's, and its completeness gap against captum's convergence delta. At 112 px and
    few steps: each point of the path is a backward pass, and neither changes what is checked."""
    x = torch.nn.functional.interpolate(photos.x[:1], size=(112, 112), mode="bilinear", antialias=True)
    y = photos.y[:1]
    steps = 4
    ours = saliency.integrated_gradients(classifier, x, y, steps=steps, batch_size=steps + 1)
    theirs, delta = IntegratedGradients(classifier).attribute(
        x, target=y, n_steps=steps + 1, method="riemann_trapezoid", return_convergence_delta=True)
    rescaled = theirs * (steps + 1) / steps  # captum weighs steps + 1 points by 1/(steps + 1)
    torch.testing.assert_close(ours, rescaled, rtol=1e-3, atol=1e-3 * theirs.abs().max().item())
    gap = saliency.completeness_gap(classifier, x, y, ours)
    # captum's delta is Σ its attributions − (S_c(x) − S_c(0)); ours adds the rescaling
    torch.testing.assert_close(gap, delta + theirs.sum() / steps, rtol=1e-3, atol=1e-3)


def test_corrupt_photo_is_reported(photos, tmp_path, monkeypatch):
    folder = data.imagenet_photos_folder()
    copy = tmp_path / "imagenet-foolbox"
    copy.mkdir()
    for name in data.IMAGENET_PHOTOS:
        (copy / name).write_bytes((folder / name).read_bytes())
    first = copy / next(iter(data.IMAGENET_PHOTOS))
    first.write_bytes(first.read_bytes()[:1000])  # truncated
    monkeypatch.setattr(data.imagenet, "imagenet_photos_folder", lambda: copy)
    with pytest.raises(data.DataCorrupt, match="SHA-256"):
        data.imagenet_photos()
    first.unlink()
    with pytest.raises(data.DataCorrupt, match="missing"):
        data.imagenet_photos()
