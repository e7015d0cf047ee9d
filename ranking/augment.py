"""Batched, per-sample image augmentation on tensors (N×3×S×S floats in [0, 1]).

Done with one ``affine_grid``/``grid_sample`` per batch rather than per-image
PIL transforms, so that augmentation costs little next to the network even on a
2-core CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.8, 1.0),
    max_shift: float = 0.1,
    max_rotation_deg: float = 0.0,
    flip: bool = True,
) -> torch.Tensor:
    """Random crop-and-resize (``scale`` = area kept), shift, rotation and horizontal flip."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (hi - lo) + lo

    zoom = uniform(*scale).sqrt()
    angle = uniform(-max_rotation_deg, max_rotation_deg) * math.pi / 180
    sign = torch.ones(n)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sign
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * sign
    theta[:, 1, 1] = cos
    slack = (1 - zoom) + max_shift
    theta[:, 0, 2] = uniform(-1, 1) * slack
    theta[:, 1, 2] = uniform(-1, 1) * slack
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_intensity(
    x: torch.Tensor, generator: torch.Generator | None = None, strength: float = 0.4
) -> torch.Tensor:
    """Random brightness and contrast, per image."""
    n = x.shape[0]
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    brightness, contrast = brightness.to(x.device), contrast.to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness * 0.5).clamp(0, 1)


def light(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augmentation for supervised (triplet) training: keeps what the judges looked at."""
    return random_affine(x, generator, scale=(0.8, 1.0), max_shift=0.06)


def strong(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augmentation for self-supervised contrastive pretraining (two views of one image)."""
    x = random_affine(x, generator, scale=(0.35, 1.0), max_shift=0.1, max_rotation_deg=10)
    return random_intensity(x, generator)
