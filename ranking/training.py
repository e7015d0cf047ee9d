"""Training loops for the embedding networks, in the style of torchvision's reference scripts.

Inputs are plain tensors: ``images`` is a uint8 tensor N×3×S×S (see
``ranking.data.load_images``) and triplets are rows (query, positive, negative)
of indices into it — the positive being the candidate the judges found more
similar to the query. Here: the config, the generic loop (``_fit``) and the
recipes (``fit_ranking``, ``fit_ranking_head`` ...); running a trained network is
``ranking.inference``, the measures ``ranking.metrics``. Nothing here imports Django.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ranking import augment
from ranking.checkpoints import cpu_state, load_checkpoint, save_atomic
from ranking.inference import (
    CachedInputs,
    autocast,
    embed_cached,
    embed_images,
    resolve_device,
    resolve_precision,
    to_input,
)
from ranking.losses import (
    batch_all_label_hinge,
    in_batch_negative_hinge,
    in_batch_softmax,
    nt_xent,
    triplet_hinge,
)
from ranking.metrics import triplet_accuracy

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    margin: float = 0.2
    # weight of the hinge loss against the batch's other images (0 = judged triplets only)
    in_batch_weight: float = 1.0
    # "softmax" (InfoNCE over the batch, with ``temperature``) or "hinge" (batch-all);
    # softmax measured better on Fashion-MNIST (docs/benchmarks.md)
    in_batch_loss: str = "softmax"
    augment: bool = True
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto", "fp32", "bf16", "fp16"
    channels_last: bool | None = None  # None: on where it helps (CUDA, and CPU at ≥ 96 px)
    seed: int = 0
    patience: int = 0  # epochs without a better held-out accuracy before stopping; 0 = never
    min_epochs: int = 0
    checkpoint_path: str | None = None  # written each epoch; an existing one is resumed
    temperature: float = 0.1  # in-batch softmax and contrastive pretraining
    eval_batch_size: int = 512

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one dict of metrics per epoch
    best_epoch: int = -1
    best_accuracy: float | None = None
    seconds: float = 0.0
    resumed_from_epoch: int = 0


EpochCallback = Callable[[int, dict], None]


# ---------------------------------------------------------------- seeds, memory format, evaluation


def use_channels_last(cfg: TrainConfig, device: torch.device, image_size: int) -> bool:
    if cfg.channels_last is not None:
        return cfg.channels_last
    return device.type == "cuda" or image_size >= 96


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, triplets: torch.Tensor, device: torch.device) -> float:
    """Held-out triplet accuracy, embedding only the images the triplets use."""
    if len(triplets) == 0:
        return float("nan")
    used, inverse = torch.unique(triplets, return_inverse=True)
    embeddings = embed_images(model, images[used], device)
    return triplet_accuracy(embeddings, inverse)


# ---------------------------------------------------------------- the generic loop


def _lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to zero over the configured epochs."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    step_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    cfg: TrainConfig,
    epoch: int,
    n_items: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype | None,
) -> float:
    """One pass over ``n_items`` in a random order (the last, partial batch dropped); the mean loss."""
    model.train()
    steps_per_epoch = max(1, n_items // cfg.batch_size)
    order = torch.randperm(n_items, generator=generator)
    total_loss = 0.0
    for step in range(steps_per_epoch):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(cfg, epoch * steps_per_epoch + step, steps_per_epoch) * group.get("lr_scale", 1.0)
        batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        with autocast(device, dtype):
            loss = step_loss(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total_loss += loss.item()
    return total_loss / steps_per_epoch


def _fit(
    model: nn.Module,
    cfg: TrainConfig,
    n_items: int,
    step_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    validate: Callable[[], float] | None,
    on_epoch: EpochCallback | None,
    extra_params: list[nn.Parameter] | None = None,
    param_groups: list[dict] | None = None,
) -> FitResult:
    """Mini-batch SGD over ``n_items`` training items, with checkpoints and early stopping.

    ``step_loss(indices, generator)`` returns the loss of one batch of item
    indices; ``validate()`` the held-out accuracy (higher is better) or None.
    The model ends up with the weights of the best epoch when there is a
    validation measure, of the last one otherwise.
    """
    generator = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    if param_groups is None:  # frozen parameters (a fine-tuned backbone's first stages) are left out
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad] + list(extra_params or [])}]
    optimizer = torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    dtype = resolve_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    result = FitResult()
    best_state = None
    start_epoch = 0
    if cfg.checkpoint_path and Path(cfg.checkpoint_path).exists():
        ckpt = load_checkpoint(cfg.checkpoint_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        result.history = list(ckpt["history"])
        result.best_epoch = ckpt["best_epoch"]
        result.best_accuracy = ckpt["best_accuracy"]
        best_state = ckpt.get("best_model")
        start_epoch = result.resumed_from_epoch = ckpt["epoch"] + 1
        logger.info("resuming from epoch %d of %s", start_epoch, cfg.checkpoint_path)

    started = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs):
        epoch_started = time.monotonic()
        loss = train_one_epoch(model, optimizer, scaler, step_loss, cfg, epoch, n_items, generator, device, dtype)
        metrics = {"epoch": epoch, "loss": loss, "seconds": round(time.monotonic() - epoch_started, 2)}
        if validate is not None:
            metrics["val_accuracy"] = accuracy = validate()
            if result.best_accuracy is None or accuracy > result.best_accuracy:
                result.best_accuracy, result.best_epoch = accuracy, epoch
                best_state = cpu_state(model)
        else:
            result.best_epoch = epoch
        result.history.append(metrics)
        logger.info("epoch %s", metrics)
        stop = (
            cfg.patience > 0 and validate is not None and epoch + 1 >= cfg.min_epochs
            and epoch - result.best_epoch >= cfg.patience
        )
        if cfg.checkpoint_path:
            save_atomic(
                {"model": cpu_state(model), "optimizer": optimizer.state_dict(), "epoch": epoch,
                 "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                 "history": result.history, "best_epoch": result.best_epoch,
                 "best_accuracy": result.best_accuracy, "best_model": best_state,
                 "config": cfg.to_dict()},
                cfg.checkpoint_path,
            )
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if stop:
            break
    if best_state is not None and validate is not None:
        model.load_state_dict(best_state)
    result.seconds = time.monotonic() - started
    return result


def _prepare(model: nn.Module, cfg: TrainConfig, image_size: int) -> tuple[torch.device, bool]:
    device = resolve_device(cfg.device)
    channels_last = use_channels_last(cfg, device, image_size)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return device, channels_last


# ---------------------------------------------------------------- the three trainings


def _validator(model: nn.Module, images: torch.Tensor, val_triplets: torch.Tensor | None, device: torch.device):
    if val_triplets is None or not len(val_triplets):
        return None
    return lambda: evaluate(model, images, val_triplets.long(), device)


def fit_autoencoder(
    model: nn.Module, images: torch.Tensor, cfg: TrainConfig, on_epoch: EpochCallback | None = None
) -> FitResult:
    """Unsupervised: minimise the pixel reconstruction error of the library's images."""
    device, channels_last = _prepare(model, cfg, images.shape[-1])

    def step_loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = to_input(images[batch], device, channels_last)
        return F.mse_loss(model(x).float(), x)

    return _fit(model, cfg, len(images), step_loss, None, on_epoch)


def fit_contrastive(
    model: nn.Module, images: torch.Tensor, cfg: TrainConfig, on_epoch: EpochCallback | None = None
) -> FitResult:
    """Self-supervised pretraining (SimCLR): two strong augmentations of an image must match.

    The air-gapped stand-in for the paper's ImageNet pretraining: it teaches the
    network the library's own visual vocabulary before any judgment exists. The
    projection head is used for the loss only and discarded afterwards.
    """
    device, channels_last = _prepare(model, cfg, images.shape[-1])
    dim = model.embedding_dim
    head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 128)).to(device)

    def step_loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = to_input(images[batch], device, channels_last)
        views = torch.cat([augment.strong(x, generator), augment.strong(x, generator)])
        z = head(model(views).float())
        return nt_xent(z[: len(batch)], z[len(batch) :], cfg.temperature)

    return _fit(model, cfg, len(images), step_loss, None, on_epoch, extra_params=list(head.parameters()))


def _ranking_step_loss(
    embed_ids: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    train_triplets: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device,
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The deep-ranking loss of one batch of triplet rows, whatever computes the embeddings.

    Each triplet (q, p, n) gives the hinge loss of the paper; with
    ``in_batch_weight`` > 0, q and p are also anchors for each other against every
    other image in the batch (but their own pair), which multiplies the number of
    constraints per judgment by the batch size. ``embed_ids(ids, generator)``
    embeds the given item indices.
    """
    train_triplets = train_triplets.long()

    def step_loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rows = train_triplets[batch]
        ids, inverse = torch.unique(rows.flatten(), return_inverse=True)
        emb = embed_ids(ids, generator).float()
        inverse = inverse.view(-1, 3).to(device)
        q, p, n = emb[inverse[:, 0]], emb[inverse[:, 1]], emb[inverse[:, 2]]
        loss = triplet_hinge(q, p, n, cfg.margin)
        if cfg.in_batch_weight > 0:
            anchors = torch.cat([inverse[:, 0], inverse[:, 1]])
            partners = torch.cat([inverse[:, 1], inverse[:, 0]])
            columns = torch.arange(len(ids), device=device)
            invalid = (columns[None, :] == anchors[:, None]) | (columns[None, :] == partners[:, None])
            # another row with the same anchor names one more image known to be similar to it
            rows, others = (anchors[:, None] == anchors[None, :]).nonzero(as_tuple=True)
            invalid[rows, partners[others]] = True
            if cfg.in_batch_loss == "softmax":
                extra = in_batch_softmax(emb[anchors], emb[partners], emb, invalid, cfg.temperature)
            else:
                extra = in_batch_negative_hinge(emb[anchors], emb[partners], emb, invalid, cfg.margin)
            loss = loss + cfg.in_batch_weight * extra
        return loss

    return step_loss


def fit_ranking(
    model: nn.Module,
    images: torch.Tensor,
    train_triplets: torch.Tensor,
    cfg: TrainConfig,
    val_triplets: torch.Tensor | None = None,
    on_epoch: EpochCallback | None = None,
    param_groups: list[dict] | None = None,
) -> FitResult:
    """Deep ranking from judged triplets, the network trained on the images (``_ranking_step_loss``).

    Only the parameters that require gradients learn (fine-tuning freezes the rest); ``param_groups``
    gives some of them their own ``lr_scale``.
    """
    device, channels_last = _prepare(model, cfg, images.shape[-1])

    def embed_ids(ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = to_input(images[ids], device, channels_last)
        if cfg.augment:
            x = augment.light(x, generator)
        return model(x)

    validate = _validator(model, images, val_triplets, device)
    return _fit(model, cfg, len(train_triplets), _ranking_step_loss(embed_ids, train_triplets, cfg, device),
                validate, on_epoch, param_groups=param_groups)


def fit_ranking_fine_tune(
    model: nn.Module,
    images: torch.Tensor,
    train_triplets: torch.Tensor,
    cfg: TrainConfig,
    val_triplets: torch.Tensor | None = None,
    on_epoch: EpochCallback | None = None,
    stages: int = 1,
    backbone_lr_scale: float = 0.1,
) -> FitResult:
    """The second phase of "linear probe, then fine-tune" (Kumar et al., ICLR 2022): after the head
    learnt on the frozen backbone, its last ``stages`` stages learn too, at a lower learning rate, on
    the images themselves. The rest of the backbone stays frozen, batch-norm statistics included."""
    backbone = model.unfreeze_last_stages(stages)
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in trainable}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in ids]},
              {"params": trainable, "lr_scale": backbone_lr_scale}]
    return fit_ranking(model, images, train_triplets, cfg, val_triplets, on_epoch, param_groups=groups)


def fit_ranking_head(
    head: nn.Module,
    inputs: CachedInputs,
    train_triplets: torch.Tensor,
    cfg: TrainConfig,
    val_triplets: torch.Tensor | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Deep ranking with the backbone frozen: the head learns from cached features, so no step runs
    the backbone (a 224-px forward pass per image is what made CPU training take hours)."""
    device = resolve_device(cfg.device)
    head.to(device)

    def embed_ids(ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return head(*inputs.to(device, ids))

    validate = None
    if val_triplets is not None and len(val_triplets):
        used, inverse = torch.unique(val_triplets.long(), return_inverse=True)
        subset = CachedInputs(inputs.features[used], None if inputs.pixels is None else inputs.pixels[used])
        validate = lambda: triplet_accuracy(embed_cached(head, subset, device), inverse)  # noqa: E731
    return _fit(head, cfg, len(train_triplets), _ranking_step_loss(embed_ids, train_triplets, cfg, device),
                validate, on_epoch)


def fit_labels_head(
    head: nn.Module,
    inputs: CachedInputs,
    labels: torch.Tensor,
    cfg: TrainConfig,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """The head trained with every image's class label (batch-all triplet loss): the upper bound."""
    device = resolve_device(cfg.device)
    head.to(device)
    labels = labels.long()

    def step_loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return batch_all_label_hinge(head(*inputs.to(device, batch)).float(), labels[batch].to(device), cfg.margin)

    return _fit(head, cfg, len(inputs), step_loss, None, on_epoch)


def fit_labels(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    val_triplets: torch.Tensor | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Supervised with every image's class label (batch-all triplet loss): an upper bound."""
    device, channels_last = _prepare(model, cfg, images.shape[-1])
    labels = labels.long()

    def step_loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = to_input(images[batch], device, channels_last)
        if cfg.augment:
            x = augment.light(x, generator)
        return batch_all_label_hinge(model(x).float(), labels[batch].to(device), cfg.margin)

    validate = _validator(model, images, val_triplets, device)
    return _fit(model, cfg, len(images), step_loss, validate, on_epoch)
