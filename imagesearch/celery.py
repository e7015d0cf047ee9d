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
    """Once per worker, at start: is there a CUDA device (torch is imported here, not per request)?"""
    try:
        import torch

        if torch.cuda.is_available():
            _worker_gpu["name"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no torch or no driver: no GPU
        _worker_gpu["name"] = ""


@inspect_command()
def gpu(state) -> dict:
    """``celery inspect gpu``: the worker's CUDA device name, "" for none."""
    return {"gpu": _worker_gpu["name"]}
