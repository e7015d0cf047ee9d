"""A model version's life: every change of its status, activating, rolling back and retiring.

A version is trained ("training"), embeds the library ("embedding"), is "ready" to serve, serves
("active", one per criterion), or ends "failed" or "retired". ``version_status_change`` is the one
place a status changes, and ``TRANSITIONS`` says which changes exist.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imagesearch.errors import AppError
from ranking.models import Embedding, ModelVersion
from ranking.selectors import images_without_embedding, previous_active_version

logger = logging.getLogger(__name__)


S = ModelVersion.Status
TRANSITIONS: dict[str, set[str]] = {
    S.TRAINING: {S.EMBEDDING, S.FAILED},  # trained; or its job failed or was cancelled
    S.EMBEDDING: {S.READY, S.RETIRED},  # embedded and indexed; or retired meanwhile
    S.READY: {S.ACTIVE, S.RETIRED},
    S.ACTIVE: {S.READY},  # another version of its criterion was activated
    S.FAILED: {S.RETIRED},
    S.RETIRED: set(),
}


def version_status_change(
    *, to: str, from_statuses: tuple[str, ...], version_id: int | None = None, criterion_id: int | None = None,
    **fields,
) -> int:
    """Move the version (or every version of the criterion) that is in one of ``from_statuses`` to
    ``to``, with ``fields`` written alongside; returns how many moved. A version in another status
    stays as it is (it was cancelled, failed or retired meanwhile): the caller decides what that means.
    Raises ValueError for a change ``TRANSITIONS`` does not allow (a bug, not bad input)."""
    for status in from_statuses:
        if to not in TRANSITIONS[status]:
            raise ValueError(f"a model version does not go from '{status}' to '{to}'")
    versions = ModelVersion.objects.filter(status__in=from_statuses)
    if version_id is not None:
        versions = versions.filter(pk=version_id)
    if criterion_id is not None:
        versions = versions.filter(criterion_id=criterion_id)
    return versions.update(status=to, **fields)


class ActivationRefused(AppError):
    """The version cannot serve searches (yet); the message says why."""


def version_activate(*, version_id: int) -> ModelVersion:
    """Make the version the one its criterion searches with, in one atomic switch.

    The previously active version goes back to "ready" (so rolling back is
    activating it again). Refused while the version's embeddings are incomplete
    or its index is not built.
    """
    criterion_id = ModelVersion.objects.values_list("criterion_id", flat=True).get(pk=version_id)
    with transaction.atomic():
        # Lock all the criterion's versions, always in the same order, so that two
        # activations cannot interleave (nor deadlock); the partial unique constraint
        # would reject the loser anyway.
        list(ModelVersion.objects.select_for_update().filter(criterion_id=criterion_id).order_by("pk"))
        version = ModelVersion.objects.get(pk=version_id)
        if version.status == ModelVersion.Status.ACTIVE:
            return version
        if version.status != ModelVersion.Status.READY:
            raise ActivationRefused(f"Version {version.pk} is {version.status}; only a ready version can be activated.")
        missing = images_without_embedding(version=version).count()
        if missing:
            raise ActivationRefused(
                f"Version {version.pk} has no embedding for {missing:,} images; refresh its embeddings first."
            )
        if not version.index_name:
            raise ActivationRefused(f"Version {version.pk} has no search index yet.")
        version_status_change(to=S.READY, from_statuses=(S.ACTIVE,), criterion_id=version.criterion_id)
        version_status_change(to=S.ACTIVE, from_statuses=(S.READY,), version_id=version.pk,
                              activated_at=timezone.now())
        version.refresh_from_db()
    logger.info("activated %s", version)
    from ranking.services.maps import map_start_if_missing

    map_start_if_missing(version=version)  # its clusters and map, for the pages that show them
    return version


def version_auto_activate(*, version_id: int) -> bool:
    """Activate a freshly embedded version when it is clearly better than what serves now.

    Policy: a criterion with no active version takes the first ready one. A ranking version
    replaces the active one only when, on at least RANKING_ACTIVATION_MIN_TRIPLETS held-out
    judged triplets (fewer decide nothing: 9 triplets put a chance-level version live), it is
    more often right than the active version with a one-sided exact paired test (McNemar's, on
    the triplets one gets right and the other wrong) at p < RANKING_ACTIVATION_MAX_P, and no
    worse than the baselines (pretrained features, the autoencoder) on the same triplets. The
    held-out triplets are those of the queries held out from its training, judged by now.
    Otherwise it waits for an admin, and the verdict says why, with each accuracy's 95 %
    interval. Nothing happens with RANKING_AUTO_ACTIVATE off.
    """
    if not settings.RANKING_AUTO_ACTIVATE:
        return False
    version = ModelVersion.objects.get(pk=version_id)
    if version.status != ModelVersion.Status.READY:
        return False
    active = ModelVersion.objects.filter(criterion_id=version.criterion_id, status=ModelVersion.Status.ACTIVE).first()
    verdict = ""
    if active is not None:
        if version.kind != ModelVersion.Kind.RANKING:
            return False
        decided, verdict = _compare_with_serving(version, active)
        if not decided:
            _decision(version, verdict)
            return False
    try:
        version_activate(version_id=version_id)
    except ActivationRefused as exc:
        _decision(version, f"Not activated: {exc}")
        return False
    _decision(version, f"Activated automatically: {verdict}" if verdict
              else "Activated automatically: the criterion had no active version.")
    return True


def _compare_with_serving(version: ModelVersion, active: ModelVersion) -> tuple[bool, str]:
    """(activate?, the verdict) for a ranking version against the active one and the baselines."""
    from labeling.selectors import training_triplets
    from ranking.selectors import triplet_outcomes
    from ranking.services.evaluation import split_by_query

    hp = version.hyperparameters
    _, held_out = split_by_query(
        training_triplets(criterion=version.criterion, min_gold_accuracy=hp.get("min_gold_accuracy"),
                          sources=hp.get("judgment_sources") or None), hp.get("val_fraction", 0.1), hp.get("seed", 0))
    others = {"the active version": active}
    for kind, name in ((ModelVersion.Kind.PRETRAINED, "pretrained features"),
                       (ModelVersion.Kind.AUTOENCODER, "the autoencoder")):
        newest = ModelVersion.objects.filter(criterion_id=version.criterion_id, kind=kind,
                                             status__in=ModelVersion.EMBEDDED_STATUSES).order_by("-pk").first()
        if newest is not None and newest.pk not in (active.pk, version.pk):
            others[name] = newest
    outcomes = {name: triplet_outcomes(version=other, triplets=held_out) for name, other in others.items()}
    own = triplet_outcomes(version=version, triplets=held_out)
    n = len(held_out)
    minimum = settings.RANKING_ACTIVATION_MIN_TRIPLETS
    if own is None or n < minimum or n == 0:
        accuracy = (version.metrics or {}).get("val_accuracy")
        return False, (f"Not decided: {n} held-out judged triplets, and at least {minimum} are needed to compare "
                       f"versions (RANKING_ACTIVATION_MIN_TRIPLETS). Held-out accuracy "
                       f"{accuracy_text(accuracy, (version.metrics or {}).get('val_triplets') or 0)}. "
                       "An admin may still activate it.")
    parts = [f"held-out accuracy {accuracy_text(float(own.mean()), n)}"]
    refused = []
    for name, theirs in outcomes.items():
        if theirs is None:
            continue
        better, worse = int((own & ~theirs).sum()), int((~own & theirs).sum())
        p_value = mcnemar_p(better, worse)
        parts.append(f"{name} {accuracy_text(float(theirs.mean()), n)}: right where it was wrong on {better}, "
                     f"wrong where it was right on {worse} (paired exact test p = {p_value:.2g})")
        if name == "the active version" and not (better > worse and p_value < settings.RANKING_ACTIVATION_MAX_P):
            refused.append(f"not clearly better than {name} (p = {p_value:.2g}; it needs "
                           f"p < {settings.RANKING_ACTIVATION_MAX_P:g}, RANKING_ACTIVATION_MAX_P)")
        elif name != "the active version" and worse > better:
            refused.append(f"below {name}")
    text = "; ".join(parts) + "."
    if refused:
        return False, f"Not activated: {' and '.join(refused)}. {text} An admin may still activate it."
    return True, text


def mcnemar_p(better: int, worse: int) -> float:
    """One-sided exact McNemar test: the chance of at least ``better`` of ``better + worse``
    discordant triplets going the candidate's way if both versions were equally good."""
    n = better + worse
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, k) for k in range(better, n + 1)) / 2**n)


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion measured on ``n`` trials."""
    if n <= 0:
        return 0.0, 1.0
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_text(accuracy: float | None, n: int) -> str:
    """"0.84 (95 % interval 0.80–0.87, 412 triplets)": an accuracy as a person can weigh it."""
    if accuracy is None:
        return f"unknown ({n} triplets)"
    low, high = wilson_interval(accuracy, n)
    return f"{accuracy:.2f} (95 % interval {low:.2f}–{high:.2f}, {n} triplets)"


def _decision(version: ModelVersion, text: str) -> None:
    """The automatic activation's verdict, in the log and on the version's refresh job (the dashboard shows it)."""
    from imagesearch.services.jobs import job_log

    logger.info("version %s: %s", version.pk, text)
    if version.embedding_job_id:
        job_log(job_id=version.embedding_job_id, line=text)


def version_rollback(*, criterion_id: int) -> ModelVersion:
    """Activate again the version that served before the active one: the latest activated before it
    that is still ready (so rolling back twice goes two versions back)."""
    previous = previous_active_version(criterion_id=criterion_id)
    if previous is None:
        raise ActivationRefused("No earlier version to roll back to: none that served before is still ready.")
    left = ModelVersion.objects.filter(criterion_id=criterion_id, status=ModelVersion.Status.ACTIVE).first()
    restored = version_activate(version_id=previous.pk)
    if left is not None:  # out of the roll-back history: the next roll back goes further back, not forward
        ModelVersion.objects.filter(pk=left.pk).update(activated_at=None)
    return restored


def version_retire(*, version_id: int, delete_weights: bool = False, dispatch: bool = False) -> ModelVersion:
    """Retire a version: it no longer serves nor keeps embeddings; the row (and by default its weights)
    stay for the record. Refused for the active version.

    With ``dispatch`` its embeddings and index are dropped by a Celery task (millions of rows), else here.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        if version.status == ModelVersion.Status.ACTIVE:
            raise ActivationRefused(f"Version {version.pk} is active; activate another version before retiring it.")
        if version.status == ModelVersion.Status.TRAINING:
            raise ActivationRefused(f"Version {version.pk} is training; cancel its job instead.")
        version_status_change(to=S.RETIRED, from_statuses=(S.EMBEDDING, S.READY, S.FAILED), version_id=version.pk)
        if version.embedding_job_id:  # a refresh under way stops embedding for nothing
            from imagesearch.services.jobs import job_cancel

            job_cancel(job_id=version.embedding_job_id, message=f"Version {version.pk} was retired.")
        if dispatch:
            from ranking.tasks import retire_version

            transaction.on_commit(lambda: retire_version.delay(version_id, delete_weights))
    if not dispatch:
        version_embeddings_drop(version_id=version_id, delete_weights=delete_weights)
    version.refresh_from_db()
    return version


def version_embeddings_drop(*, version_id: int, delete_weights: bool = False) -> None:
    """Drop a retired version's index and embeddings (idempotent)."""
    from ranking.services.embeddings import index_drop

    version = ModelVersion.objects.get(pk=version_id)
    if version.status != ModelVersion.Status.RETIRED:
        return
    index_drop(version=version)
    Embedding.objects.filter(version=version).delete()
    from ranking.services.features import extractor_drop_if_unused

    extractor_drop_if_unused(extractor_id=version.feature_extractor_id)  # the cache goes with its last reader
    if delete_weights and version.weights_file:
        (settings.RANKING_MODELS_DIR / version.weights_file).unlink(missing_ok=True)


def version_fail_with_its_job(job_id: int, status: str, reason: str) -> None:
    """End-of-job hook (``imagesearch.services.jobs.job_end_hook``): a version still training when its
    training job fails or is cancelled fails with it, for the same reason."""
    version_id = ModelVersion.objects.filter(training_job_id=job_id).values_list("pk", flat=True).first()
    if version_id is not None:
        version_status_change(to=S.FAILED, from_statuses=(S.TRAINING,), version_id=version_id, error=reason)
