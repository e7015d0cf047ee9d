"""The Celery application. Settings come from Django settings prefixed ``CELERY_``."""

import os

from celery import Celery

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
app.autodiscover_tasks()


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
def gpu(state) -> dict:
    """``celery inspect gpu``: the worker's CUDA device name, "" for none."""
    return {"gpu": _worker_gpu["name"]}
