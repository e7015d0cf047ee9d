"""Celery tasks of the image library: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from imagesearch.celery import DATABASE_RETRY

logger = logging.getLogger(__name__)


@shared_task(
    name="imagesearch.ingest_chunk",
    bind=True,
    queue="default",
    **DATABASE_RETRY,
    soft_time_limit=30 * 60,
    time_limit=35 * 60,
)
def ingest_chunk(self, chunk_id: int) -> None:
    from imagesearch.models import IngestChunk
    from imagesearch.services.ingest import ingest_chunk_process
    from imagesearch.services.jobs import job_fail

    try:
        ingest_chunk_process(chunk_id=chunk_id)
    except (OperationalError, InterfaceError):
        raise  # retried by autoretry_for: the database may be back in a moment
    except Exception as exc:
        # A bug, not a bad file (those are reported per file): fail the job loudly
        # rather than leave it "running" forever.
        logger.exception("import chunk %s failed", chunk_id)
        job_id = IngestChunk.objects.filter(pk=chunk_id).values_list("job_id", flat=True).first()
        if job_id:
            job_fail(job_id=job_id, exc=exc)
        raise


@shared_task(name="imagesearch.sweep_media", queue="default", soft_time_limit=50 * 60, time_limit=55 * 60)
def sweep_media(min_age_seconds: float = 3600) -> int:
    from imagesearch.services.library import media_sweep_orphans

    return media_sweep_orphans(min_age_seconds=min_age_seconds)


@shared_task(name="imagesearch.fail_orphaned_jobs", queue="default", soft_time_limit=120, time_limit=150)
def fail_orphaned_jobs() -> None:
    """The periodic check: running jobs of workers that stopped answering are reported failed."""
    from imagesearch.workers import workers_check_jobs

    workers_check_jobs()
