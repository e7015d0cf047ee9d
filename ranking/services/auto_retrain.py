"""The automatic loop: a new deep-ranking version once enough judgments arrived (``training_start_if_due``)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from imagesearch.models import Job
from imagesearch.services.jobs import job_log
from ranking.models import ModelVersion, SimilarityCriterion
from ranking.services.training import training_start


def training_start_if_due(*, criterion_id: int) -> ModelVersion | None:
    """The automatic loop: start a deep-ranking version once ``auto_retrain_after`` judgments arrived
    since the last one was started. One at a time: nothing while a version trains or embeds.

    The new version is embedded when trained and activated only if it beats the active one on the
    held-out judged triplets (``versions.version_auto_activate``); each step is a Job with its log.
    """
    from labeling.models import TripletJudgment

    with transaction.atomic():
        criterion = SimilarityCriterion.objects.select_for_update().filter(pk=criterion_id).first()
        if criterion is None or not criterion.auto_retrain_after:
            return None
        unfinished = [s for s in Job.Status.values if s not in Job.FINISHED]
        busy = criterion.versions.filter(
            Q(status=ModelVersion.Status.TRAINING, training_job__status__in=unfinished)
            | Q(status=ModelVersion.Status.EMBEDDING, embedding_job__status__in=unfinished))
        if busy.exists():
            return None
        last = criterion.versions.filter(kind=ModelVersion.Kind.RANKING).order_by("-pk").first()
        new = TripletJudgment.objects.filter(triplet__criterion=criterion)
        if last is not None:
            new = new.filter(created_at__gt=last.created_at)
        arrived = new.count()
        if arrived < criterion.auto_retrain_after:
            return None
        version = training_start(criterion=criterion, kind=ModelVersion.Kind.RANKING)
        Job.objects.filter(pk=version.training_job_id).update(params={**version.training_job.params, "automatic": True})
        job_log(job_id=version.training_job_id, line=f"Started automatically: {arrived} new judgments since "
                + (f"version {last.pk}." if last else "the start."))
    return version
