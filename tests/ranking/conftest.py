"""Fixtures of the ranking tests."""

from __future__ import annotations

import io
from importlib.resources import files

import pytest
from PIL import Image as PILImage

from bench.duplicates import copies_of
from imagesearch.services.ingest import image_ingest_bytes
from imagesearch.services.library import collection_get_or_create

# photos that ship in scikit-image's wheel: real pictures, each unlike the others
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg"]


def _photo(name: str) -> PILImage.Image:
    with PILImage.open(files("skimage") / "data" / name) as im:
        return im.convert("RGB")


def _bytes(im: PILImage.Image, fmt: str = "PNG", **params) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def _copies(im: PILImage.Image) -> dict[str, bytes]:
    """The picture as a library might hold it several times: itself, and resized, recompressed, cropped by 4 %."""
    return {"original": _bytes(im), **copies_of(im)}


@pytest.fixture
def copied_library(db, criterion):
    """Four copies each of four photos, two photos once each, and the pretrained model active."""
    from ranking.services.training import training_start, version_train

    families: dict[str, set[int]] = {}
    collection = collection_get_or_create(name="Photos")
    for n, name in enumerate(PHOTOS):
        copies = _copies(_photo(name))
        if n >= 4:
            copies = {"original": copies["original"]}
        for kind, data in copies.items():
            outcome = image_ingest_bytes(data=data, original_name=f"{name}-{kind}.png", collection=collection)
            families.setdefault(name, set()).update(outcome.image_ids)
    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version_train(version_id=version.pk, embed="inline")
    return families
