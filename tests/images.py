"""Generated image files for tests: every format and oddity the library must accept or refuse."""

from __future__ import annotations

import io
import random

from PIL import Image


def photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A small picture with structure (gradients and blocks), different per seed."""
    rng = random.Random(seed)
    im = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        color = tuple(rng.randrange(256) for _ in range(3))
        im.paste(color, (x, y, min(width, x + width // 4), min(height, y + height // 4)))
    return im


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **params)
    return out.getvalue()


def jpeg(seed: int = 0, width: int = 320, height: int = 240, **params) -> bytes:
    return encode(photo(width, height, seed), "JPEG", quality=85, **params)


def png(seed: int = 0, width: int = 200, height: int = 150) -> bytes:
    return encode(photo(width, height, seed), "PNG")


def multipage_tiff(pages: int = 3, seed: int = 0) -> bytes:
    frames = [photo(160, 120, seed * 100 + i) for i in range(pages)]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def stripes(vertical: bool, seed: int = 0, size: int = 48) -> bytes:
    """A PNG of coloured stripes, horizontal or vertical: two classes a model can learn apart."""
    import random

    rng = random.Random(seed)
    period = rng.randint(4, 9)
    fg = tuple(rng.randint(0, 255) for _ in range(3))
    bg = tuple(rng.randint(0, 255) for _ in range(3))
    im = Image.new("RGB", (size, size), bg)
    px = im.load()
    for y in range(size):
        for x in range(size):
            if ((x if vertical else y) // period) % 2 == 0:
                px[x, y] = fg
    return encode(im, "PNG")
