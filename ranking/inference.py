"""Running a trained network forward: the device and precision it runs with, and embeddings.

Inputs are uint8 image tensors N×3×S×S (see ``ranking.data.load_images``) or the
cached inputs of a head above a frozen backbone (``CachedInputs``). Nothing here
imports Django.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


# ---------------------------------------------------------------- devices and precision


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype to train with, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On the CPU, bf16 autocast pays only with hardware bf16: measured 1.65× for the
    # resnet18 ranking network at 28 px on an AVX512-BF16 CPU (docs/benchmarks.md).
    return torch.bfloat16 if cpu_supports_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------- batches and embeddings


def to_input(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 N×3×S×S on the CPU → float in [0, 1] on ``device``."""
    x = batch.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def inference_batch_size(device: torch.device, image_size: int) -> int:
    """Images per forward pass when only embedding. On a CPU, large images go fastest in small
    batches that stay in cache: EfficientNet-Lite0 at 224 px ran 80 images/s in batches of 8
    against 25 in batches of 64 on the 2-core machine (docs/benchmarks.md)."""
    if device.type != "cpu":
        return 512
    return 8 if image_size >= 96 else 512


@torch.inference_mode()
def embed_images(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    precision: str = "auto",
) -> torch.Tensor:
    """Embeddings (float32, on the CPU) of a uint8 image tensor, in order."""
    device = torch.device(device) if isinstance(device, str) else device
    batch_size = batch_size or inference_batch_size(device, images.shape[-1])
    model.eval().to(device)
    channels_last = device.type == "cuda" or images.shape[-1] >= 96
    if channels_last:
        model.to(memory_format=torch.channels_last)
    dtype = resolve_precision(precision, device)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size], device, channels_last)
        with autocast(device, dtype):
            out.append(model.embed(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, getattr(model, "embedding_dim", 0))


# ---------------------------------------------------------------- a head's cached inputs


@dataclass
class CachedInputs:
    """What a head above a frozen backbone reads, one row per image: the backbone's pooled features
    (fp16 from the feature cache) and the quarter-size copy of the image (uint8), or None."""

    features: torch.Tensor
    pixels: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.features)

    def to(self, device: torch.device, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.features[ids].to(device, non_blocking=True).float()
        pixels = None if self.pixels is None else self.pixels[ids].to(device, non_blocking=True).float().div_(255)
        return features, pixels


@torch.inference_mode()
def embed_cached(head: nn.Module, inputs: CachedInputs, device: torch.device | str = "cpu",
                 batch_size: int = 1024) -> torch.Tensor:
    """Embeddings (float32, on the CPU) of cached inputs under a ranking head (or ``embed_features``)."""
    device = torch.device(device) if isinstance(device, str) else device
    head.eval().to(device)
    forward = getattr(head, "embed_features", head)
    out = [forward(*inputs.to(device, torch.arange(start, min(start + batch_size, len(inputs))))).float().cpu()
           for start in range(0, len(inputs), batch_size)]
    return torch.cat(out) if out else torch.empty(0, getattr(head, "embedding_dim", 0))
