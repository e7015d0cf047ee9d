"""The feature cache: a frozen backbone's output for each image, computed once and read many times.

A pretrained backbone at one input size (``FeatureExtractor``) maps an image to the same
features for ever (image bytes never change), so its pass over the library — the costly
part, a 224-px forward pass per image — is done once and stored in ``ImageFeature``:
pretrained-features versions embed from it, and deep-ranking heads train on it and embed
from it in seconds. Features are filled as a side effect of embedding with a version that
reads the cache (the first model's embedding refresh fills it for the whole library, in
its resumable chunks; images imported later get theirs with their embeddings), and by a
training that finds some of its images missing. Every batch is stored as it is computed,
so a killed worker loses one batch, and the next attempt computes only what is missing.

Why a table and not a memory-mapped file: every worker reads and writes it without a
shared filesystem, rows go with their images (ON DELETE CASCADE) and with their
extractor, and an upsert per batch is what makes the pass resumable. Training reads only
the few thousand judged images; 1280 fp16 values and a 56-px copy are ≈ 12 kB an image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.db import transaction

from imagesearch.models import Image
from ranking.models import FeatureExtractor, ImageFeature, ModelVersion

logger = logging.getLogger(__name__)

# images decoded and stored per step: what a killed worker can lose
STORE_BATCH = 64


def extractor_for_model(model) -> FeatureExtractor | None:
    """The cache entry of a model whose embeddings come from a frozen pretrained backbone, else None.

    Random weights are never cached: they differ from one initialisation to the next.
    """
    if not hasattr(model, "embed_features") or getattr(model, "weights_used", "random") == "random":
        return None
    if getattr(model, "tuned_stages", 0):
        return None  # a fine-tuned backbone is the version's own
    from ranking.nets import shallow_input_size

    extractor, _ = FeatureExtractor.objects.get_or_create(
        backbone=model.backbone_name, weights=model.weights_used, image_size=model.image_size,
        defaults={"feature_dim": model.feature_dim, "pixels_size": shallow_input_size(model.image_size)},
    )
    return extractor


def features_missing(*, extractor: FeatureExtractor, image_ids: list[int]) -> list[int]:
    """Those of ``image_ids`` with no cached features, in id order."""
    have = set(ImageFeature.objects.filter(extractor=extractor, image_id__in=image_ids).values_list("image_id", flat=True))
    return sorted(i for i in set(image_ids) if i not in have)


def features_compute(
    *, extractor: FeatureExtractor, model, image_ids: list[int],
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Run the backbone over those of ``image_ids`` that lack features, storing them as it goes.

    Unreadable files are skipped with a warning (no row: a later pass tries again). Returns how
    many were stored. ``on_progress(done, total)`` is called after each stored batch.
    """
    import torch

    from ranking.data import iter_image_batches
    from ranking.nets import shallow_input
    from ranking.inference import inference_batch_size, resolve_device, to_input

    missing = features_missing(extractor=extractor, image_ids=image_ids)
    if not missing:
        return 0
    device = resolve_device(settings.RANKING_DEVICE)
    model.eval().to(device)
    size = extractor.image_size
    step = inference_batch_size(device, size)
    names = dict(Image.objects.filter(pk__in=missing).values_list("pk", "file"))
    missing = [i for i in missing if i in names]
    paths = [str(settings.MEDIA_ROOT / names[i]) for i in missing]
    stored = offset = 0
    for batch, ok in iter_image_batches(paths, size, batch_size=STORE_BATCH):
        with torch.inference_mode():
            x = to_input(batch, device, channels_last=device.type == "cuda" or size >= 96)
            features = torch.cat([model.features(x[i : i + step]) for i in range(0, len(x), step)])
            pixels = shallow_input(x, size).mul_(255).round_().to(torch.uint8)
        features = features.half().cpu().numpy().astype("<f2")
        pixels = pixels.cpu().numpy()
        rows = []
        for j in range(len(batch)):
            if ok[j]:
                rows.append(ImageFeature(extractor=extractor, image_id=missing[offset + j],
                                         features=features[j].tobytes(), pixels=pixels[j].tobytes()))
            else:
                logger.warning("image %s: file unreadable, no features (%s)", missing[offset + j], paths[offset + j])
        ImageFeature.objects.bulk_create(rows, update_conflicts=True, unique_fields=["extractor", "image"],
                                         update_fields=["features", "pixels"])
        stored += len(rows)
        offset += len(batch)
        if on_progress is not None:
            on_progress(offset, len(missing))
    return stored


def features_load(*, extractor: FeatureExtractor, image_ids: list[int]):
    """The cached inputs of ``image_ids`` in that order (``ranking.inference.CachedInputs``), and the
    ids found; rows of images without features are left out."""
    import torch

    from ranking.inference import CachedInputs

    rows = dict((image_id, (f, p)) for image_id, f, p in ImageFeature.objects.filter(
        extractor=extractor, image_id__in=image_ids).values_list("image_id", "features", "pixels").iterator(2000))
    found = [i for i in image_ids if i in rows]
    side = extractor.pixels_size
    features = np.empty((len(found), extractor.feature_dim), dtype=np.float16)
    pixels = np.empty((len(found), 3, side, side), dtype=np.uint8)
    for n, image_id in enumerate(found):
        f, p = rows[image_id]
        features[n] = np.frombuffer(f, dtype="<f2")
        pixels[n] = np.frombuffer(p, dtype=np.uint8).reshape(3, side, side)
    return CachedInputs(torch.from_numpy(features), torch.from_numpy(pixels)), found


def extractor_drop_if_unused(*, extractor_id: int | None) -> bool:
    """Drop an extractor and its cached features once no version that reads them is left
    (all retired or failed); returns whether it was dropped."""
    if extractor_id is None:
        return False
    with transaction.atomic():
        extractor = FeatureExtractor.objects.select_for_update().filter(pk=extractor_id).first()
        if extractor is None:
            return False
        if extractor.versions.exclude(status__in=[ModelVersion.Status.RETIRED, ModelVersion.Status.FAILED]).exists():
            return False
        count = extractor.features.count()
        extractor.delete()
    logger.info("dropped the cached features of %s (%d images): no version reads them any more", extractor, count)
    return True
