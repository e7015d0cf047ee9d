"""Celery tasks of the labeling app: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from imagesearch.tasking import app_task

logger = logging.getLogger(__name__)

REFILL_THROTTLE_SECONDS = 30


@app_task("labeling.refill_triplets")
def refill_triplets(criterion_id: int, focus_id: int | None = None) -> int:
    """Top the criterion's queue of one focus (or the library) up to LABELING_QUEUE_TARGET."""
    from labeling.models import LabelingFocus
    from labeling.services.triplets import triplets_refill
    from ranking.models import SimilarityCriterion

    criterion = SimilarityCriterion.objects.filter(pk=criterion_id).first()
    focus = LabelingFocus.objects.filter(pk=focus_id, criterion_id=criterion_id).first() if focus_id else None
    if criterion is None or (focus_id and focus is None):
        return 0  # deleted since the refill was queued
    return triplets_refill(criterion=criterion, focus=focus)


def refill_triplets_soon(*, criterion_id: int, focus_id: int | None = None) -> None:
    """Queue a refill after this transaction commits, at most once per queue every 30 s in this process
    (a refill of a full queue does nothing, so a missed throttle costs one cheap task)."""
    if not settings.LABELING_BACKGROUND_REFILL:
        return
    key = f"labeling-refill-{criterion_id}-{focus_id}"
    if cache.add(key, 1, timeout=REFILL_THROTTLE_SECONDS):
        transaction.on_commit(lambda: _send_refill(criterion_id, focus_id))


def _send_refill(criterion_id: int, focus_id: int | None) -> None:
    try:
        refill_triplets.delay(criterion_id, focus_id)
    except Exception:  # noqa: BLE001 - a broker outage must not fail the labeler's request
        logger.exception("could not queue a refill of criterion %s, focus %s", criterion_id, focus_id)
