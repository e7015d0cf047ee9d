"""Scoring versions on held-out judged triplets: the split by query, the held-out P@10 of a trained
network and the held-out accuracy of the versions it is compared with.

(The paired test that decides an automatic activation is ``versions.version_auto_activate``;
the per-triplet outcomes it compares, ``ranking.selectors.triplet_outcomes``.)
"""

from __future__ import annotations

import zlib

from django.conf import settings

from ranking.models import ModelVersion, SimilarityCriterion


def split_by_query(triplets: list[tuple[int, int, int]], val_fraction: float, seed: int):
    """Hold out every triplet of a random ``val_fraction`` of the query images.

    Splitting by query, not by triplet, keeps the held-out measure honest: no
    held-out query was seen as an anchor in training. (Candidates may still be
    held-out queries of other triplets.)
    """
    queries = sorted({q for q, _, _ in triplets})
    held = {q for q in queries if _held_out(q, val_fraction, seed)}
    if not held and val_fraction > 0 and len(queries) > 1:
        # few queries may all hash above the cut: hold out the lowest, still decided by ids alone
        held = {min(queries, key=lambda q: _query_hash(q, seed))}
    train = [t for t in triplets if t[0] not in held]
    val = [t for t in triplets if t[0] in held]
    return train, val


def _held_out(query_id: int, val_fraction: float, seed: int) -> bool:
    """Whether a query image is held out: decided by its id alone, so the split stays put as
    judgments accumulate, and a version continuing from its parent is not scored on the
    parent's training queries."""
    return _query_hash(query_id, seed) < val_fraction * 10_000


def _query_hash(query_id: int, seed: int) -> int:
    return zlib.crc32(f"{seed}:{query_id}".encode()) % 10_000


def baseline_accuracies(*, criterion: SimilarityCriterion, triplets: list[tuple[int, int, int]]) -> dict:
    """Held-out triplet accuracy of the criterion's active version and newest baselines (pretrained features,
    autoencoder), from stored embeddings."""
    from ranking.selectors import triplet_accuracy_of_version

    out = {}
    active = ModelVersion.objects.filter(criterion=criterion, status=ModelVersion.Status.ACTIVE).first()

    def newest(kind: str) -> ModelVersion | None:
        return ModelVersion.objects.filter(criterion=criterion, kind=kind,
                                           status__in=ModelVersion.EMBEDDED_STATUSES).order_by("-pk").first()

    baselines = (("active", active), ("pretrained", newest(ModelVersion.Kind.PRETRAINED)),
                 ("autoencoder", newest(ModelVersion.Kind.AUTOENCODER)))
    for key, version in baselines:
        if version is not None:
            out[key] = triplet_accuracy_of_version(version=version, triplets=triplets)
    return out


def judged_p_at_10_cached(model, inputs, val) -> float | None:
    """``judged_p_at_10`` of a head on cached inputs (``ranking.inference.CachedInputs``)."""
    import math

    from ranking.inference import embed_cached, resolve_device
    from ranking.metrics import judged_precision_at_k

    if len(val) == 0:
        return None
    value = judged_precision_at_k(embed_cached(model, inputs, resolve_device(settings.RANKING_DEVICE)), val)
    return None if math.isnan(value) else round(value, 4)


def judged_p_at_10(model, images, val) -> float | None:
    """P@10 on the held-out queries' judged images (``ranking.metrics.judged_precision_at_k``)."""
    import math

    import torch

    from ranking.inference import embed_images, resolve_device
    from ranking.metrics import judged_precision_at_k

    if len(val) == 0:
        return None
    used = sorted({int(i) for i in val.flatten().tolist()})
    vectors = torch.zeros(len(images), model.embedding_dim)
    vectors[used] = embed_images(model, images[torch.tensor(used)], resolve_device(settings.RANKING_DEVICE))
    value = judged_precision_at_k(vectors, val)
    return None if math.isnan(value) else round(value, 4)
