"""Celery tasks of the image library: thin wrappers that take ids and call services."""

from __future__ import annotations

from imagesearch.tasking import app_task


@app_task("imagesearch.ingest_chunk", soft_time_limit=30 * 60, time_limit=35 * 60, chunk_of="imagesearch.IngestChunk")
def ingest_chunk(chunk_id: int) -> None:
    from imagesearch.services.ingest import ingest_chunk_process

    ingest_chunk_process(chunk_id=chunk_id)


@app_task("imagesearch.sweep_media", soft_time_limit=50 * 60, time_limit=55 * 60, retry_database=False)
def sweep_media(min_age_seconds: float = 3600) -> int:
    from imagesearch.services.library import media_sweep_orphans

    return media_sweep_orphans(min_age_seconds=min_age_seconds)


@app_task("imagesearch.fail_orphaned_jobs", soft_time_limit=120, time_limit=150, retry_database=False)
def fail_orphaned_jobs() -> None:
    """The periodic check: running jobs of workers that stopped answering are reported failed."""
    from imagesearch.workers import workers_check_jobs

    workers_check_jobs()
