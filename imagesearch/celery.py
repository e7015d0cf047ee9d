"""The Celery application. Settings come from Django settings prefixed ``CELERY_``."""

import os

from celery import Celery
from django.db import InterfaceError, OperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")

app = Celery("imagesearch")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # A task is acknowledged only after it ran, so a worker that dies mid-task leaves
    # it to be redelivered; every task is idempotent, so running one twice is safe.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="default",
    task_ignore_result=True,
    task_soft_time_limit=50 * 60,
    task_time_limit=60 * 60,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
)
# Checks that keep the library whole when something died, run by the beat scheduler that `serve`
# starts inside its worker (`celery worker -B`); with several workers, run exactly one beat.
app.conf.beat_schedule = {
    # running jobs of a worker that is gone are reported failed (the dashboard checks too, when open)
    "fail-orphaned-jobs": {"task": "imagesearch.fail_orphaned_jobs", "schedule": 60.0},
    # library images that a version keeping embeddings lacks (a task lost to a crash) get embedded
    "embed-missing-images": {"task": "ranking.embed_missing_images", "schedule": 300.0},
    # files no row refers to (a chunk interrupted by a crash), older than an hour
    "sweep-media": {"task": "imagesearch.sweep_media", "schedule": 3600.0},
}
app.autodiscover_tasks()

# Tasks that touch the database retry when it is unreachable, backing off for about 8 minutes in
# all (2, 4, … 60 s): longer than the embedded PostgreSQL takes to restart after a crash, which
# `serve` does, so a crash costs a pause rather than the tasks that were queued.
DATABASE_RETRY = dict(
    autoretry_for=(OperationalError, InterfaceError), retry_backoff=2, retry_backoff_max=60, retry_jitter=False,
    max_retries=12,
)


# --- what each worker can do, for the dashboard ----------------------------------------
from celery.signals import worker_ready  # noqa: E402
from celery.worker.control import inspect_command  # noqa: E402

_worker_gpu = {"name": ""}


@worker_ready.connect
def _probe_gpu(**_kwargs) -> None:
    """Once per worker, at start: its CUDA device, asked of nvidia-smi in a child process. (Asking torch
    here would start CUDA in the parent, and the pool's forked children could then not use it.)"""
    import shutil
    import subprocess

    from django.conf import settings

    if settings.RANKING_DEVICE == "cpu" or shutil.which("nvidia-smi") is None:
        return
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return
    _worker_gpu["name"] = ", ".join(line.strip() for line in out.splitlines() if line.strip())


@inspect_command()
def worker_status(state) -> dict:
    """``celery inspect worker_status``: the queues the worker consumes, its CUDA device ("" for none) and
    how many tasks it runs, in one reply (three inspections took three broadcast timeouts, 3 s a minute
    of a worker's time for the periodic check)."""
    from celery.worker import state as worker_state

    consumer = state.consumer.task_consumer
    return {"queues": sorted(q.name for q in consumer.queues) if consumer else [], "gpu": _worker_gpu["name"],
            "active_tasks": len(worker_state.active_requests)}
