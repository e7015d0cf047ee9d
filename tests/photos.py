"""Real photos for tests: those in scikit-image's wheel, each unlike the others, and copies of them."""

from __future__ import annotations

import functools
import io
from importlib.resources import files

from PIL import Image as PILImage

from bench.duplicates import copies_of

PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg"]


def photo(name: str) -> PILImage.Image:
    with PILImage.open(files("skimage") / "data" / name) as im:
        return im.convert("RGB")


def encoded(im: PILImage.Image, fmt: str = "PNG", **params) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def copies(im: PILImage.Image) -> dict[str, bytes]:
    """The picture as a library might hold it several times: itself, and resized, recompressed, cropped by 4 %."""
    return {"original": encoded(im), **copies_of(im)}


@functools.lru_cache(maxsize=None)
def library_copies(name: str, with_copies: bool = True) -> tuple[tuple[str, bytes], ...]:
    """``copies(photo(name))`` (or only the original), made once per test process: encoding the large photos
    took 2 s per test that wanted them."""
    im = photo(name)
    return tuple(copies(im).items()) if with_copies else (("original", encoded(im)),)
