"""The hyperparameter registry of model versions: each kind's defaults, which of them are network
parameters, what "auto" and None become, and the check that a version's hyperparameters are known.

A version's hyperparameters are recorded when it is started (``training.training_start``);
those the network is built with are saved with its weights.
"""

from __future__ import annotations

from django.conf import settings

from imagesearch.errors import AppError
from ranking.models import ModelVersion

# Network parameters (what ``ranking.nets.build_model`` takes) per kind; the rest
# of a version's hyperparameters configure training.
MODEL_PARAMS = {
    ModelVersion.Kind.PRETRAINED: ("backbone", "image_size", "weights", "pooling"),
    ModelVersion.Kind.AUTOENCODER: ("image_size", "embedding_dim", "width", "depth"),
    ModelVersion.Kind.RANKING: ("backbone", "embedding_dim", "image_size", "weights"),  # see ranking_model_params
}


def model_params(kind: str, hp: dict) -> dict:
    """The network parameters (what ``ranking.nets.build_model`` takes) of a version's hyperparameters."""
    if kind == ModelVersion.Kind.RANKING:
        return ranking_model_params(hp)
    return {k: hp[k] for k in MODEL_PARAMS[kind] if k in hp}


def default_hyperparameters(kind: str) -> dict:
    if kind == ModelVersion.Kind.PRETRAINED:
        # ImageNet weights whenever they are on the machine (the default backbone's always are)
        # pooling "max": features for near-duplicates (ranking.nets.POOLINGS)
        return {"backbone": settings.RANKING_PRETRAINED_BACKBONE, "weights": "imagenet",
                "image_size": settings.RANKING_PRETRAINED_IMAGE_SIZE, "epochs": 0, "pooling": "avg"}
    if kind == ModelVersion.Kind.AUTOENCODER:
        size = settings.RANKING_AUTOENCODER_IMAGE_SIZE
        return {"image_size": size, "embedding_dim": 64, "width": 32, "depth": 2 if size <= 32 else 4,
                "epochs": 10, "batch_size": 128, "lr": 2e-3, "max_images": settings.RANKING_TRAIN_MAX_IMAGES,
                "seed": 0}
    return {
        "backbone": settings.RANKING_BACKBONE, "weights": settings.RANKING_BACKBONE_WEIGHTS or None,
        "embedding_dim": 256, "image_size": settings.RANKING_IMAGE_SIZE,
        # "frozen": the head learns on cached features (minutes on a CPU); "fine_tune": then the backbone's
        # last stages too, on the images; "full": the whole network on the images (random weights: from
        # scratch); "auto": frozen on a CPU, fine_tune on a GPU
        "backbone_mode": "auto", "hidden_dim": 512, "shallow_channels": 96, "shallow": True,
        "fine_tune_epochs": 5, "fine_tune_stages": 1, "fine_tune_lr_scale": 0.1,
        # None: by backbone mode (RANKING_MODE_DEFAULTS)
        "epochs": 30, "batch_size": 64, "lr": None,
        "margin": None, "in_batch_weight": None, "in_batch_loss": "softmax", "temperature": 0.1,
        # self-supervised (SimCLR) epochs on the library before the first ranking version;
        # off by default: on a CPU it costs more than it gained here (docs/benchmarks.md)
        "pretrain_epochs": 0, "pretrain_batch_size": 256,
        "pretrain_lr": 2e-3, "max_images": settings.RANKING_TRAIN_MAX_IMAGES, "val_fraction": 0.1,
        "min_train_triplets": 20, "patience": 0, "seed": 0,
        # which judgments: labelers below this gold accuracy left out (None: LABELING_MIN_GOLD_ACCURACY),
        # and only these sources (empty: all)
        "min_gold_accuracy": None, "judgment_sources": [],
    }


def hyperparameters_resolve(*, kind: str, hyperparameters: dict | None = None) -> dict:
    """The hyperparameters a new version of ``kind`` records: its defaults, overridden by these.

    An unknown kind or hyperparameter is a ``ValueError``.
    """
    if kind not in MODEL_PARAMS:
        raise AppError(f"unknown model kind {kind!r}")
    params = {**default_hyperparameters(kind), **(hyperparameters or {})}
    unknown = set(params) - set(default_hyperparameters(kind))
    if unknown:
        raise AppError(f"unknown hyperparameters for {kind}: {', '.join(sorted(unknown))}")
    if kind == ModelVersion.Kind.PRETRAINED and params["pooling"] != "avg":  # "avg" needs no torch to check
        from ranking.nets import pooling_check

        try:
            pooling_check(params["backbone"], params["pooling"])
        except ValueError as exc:
            raise AppError(str(exc)) from None
    return params


# What the hyperparameters left at None become, by backbone mode (bench.quality on Fashion-MNIST,
# docs/benchmarks.md). In-batch negatives help a network learning its features (P@10 0.826 against
# 0.74–0.78 without) but hurt a head on frozen features (0.81 against 0.83), whose in-batch
# neighbours share the query's class far more often; the head also wants a wider margin and a
# gentler learning rate (0.852 against 0.834 with the network's 0.2 and 1e-3).
RANKING_MODE_DEFAULTS = {
    "full": {"lr": 1e-3, "margin": 0.2, "in_batch_weight": 1.0},
    "frozen": {"lr": 3e-4, "margin": 0.8, "in_batch_weight": 0.0},  # fine_tune's head phase too
}


def ranking_model_params(hp: dict) -> dict:
    """What ``ranking.nets.build_model("ranking", ...)`` takes for these hyperparameters.

    A frozen or fine-tuned backbone gets the pretrained multi-scale network (``PretrainedRankingNet``);
    "full" the network trained whole, as before pretrained backbones (``DeepRankingNet``).
    """
    if hp.get("backbone_mode", "full") == "full":
        return {k: hp[k] for k in ("backbone", "embedding_dim", "image_size", "weights")}
    return {"network": "pretrained", **{k: hp[k] for k in (
        "backbone", "image_size", "weights", "embedding_dim", "hidden_dim", "shallow_channels", "shallow")}}


def resolved_backbone_mode(hp: dict, device_type: str | None = None) -> str:
    """"auto" becomes what fits the device ("cpu" or "cuda"; by default RANKING_DEVICE's): the frozen
    backbone (head on cached features) on a CPU, fine-tuning on a GPU."""
    mode = hp.get("backbone_mode", "full")
    if mode != "auto":
        return mode
    return "fine_tune" if (device_type or training_device_type()) == "cuda" else "frozen"


def training_device_type() -> str:
    """"cuda" or "cpu": what training runs on (RANKING_DEVICE), as far as this machine can tell."""
    from ranking.inference import resolve_device

    return resolve_device(settings.RANKING_DEVICE).type
