"""Loading image files into a uint8 tensor at the network's input size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps


def load_image(path: str | Path, size: int, fill: tuple[int, int, int] = (255, 255, 255)) -> torch.Tensor:
    """One file as a 3×size×size uint8 tensor: fitted inside the square, padded with ``fill``.

    Letterboxing rather than squashing or cropping keeps a figure's proportions
    and all of its content (figures cut from documents have a white margin).
    """
    with PILImage.open(path) as im:
        # JPEG: decode at a reduced scale when that suffices; the long side is what must reach
        # ``size`` (letterboxed), so ask for the fitted size, not the square
        scale = size / max(im.size)
        im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
        im = ImageOps.exif_transpose(im).convert("RGB")
        if im.size != (size, size):
            im = ImageOps.pad(im, (size, size), method=PILImage.Resampling.BILINEAR, color=fill)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str | Path], size: int):
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        try:
            return load_image(self.paths[i], self.size), True
        except (OSError, ValueError):
            # A file that vanished or went bad since import: a blank image, reported.
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), False


def iter_image_batches(paths: Sequence[str | Path], size: int, batch_size: int = 256, workers: int = 0):
    """Yield (uint8 batch, ok mask) over ``paths`` in order, decoding in ``workers`` processes."""
    loader = torch.utils.data.DataLoader(
        _Files(paths, size), batch_size=batch_size, num_workers=workers, shuffle=False
    )
    yield from loader


def load_images(paths: Sequence[str | Path], size: int, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``paths`` as an N×3×size×size uint8 tensor, and a bool mask of those that loaded."""
    images, ok = [], []
    for batch, mask in iter_image_batches(paths, size, workers=workers):
        images.append(batch)
        ok.append(mask)
    if not images:
        return torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, dtype=torch.bool)
    return torch.cat(images), torch.cat(ok)
