"""One way to declare a Celery task of this project (every app's tasks.py uses it): its name, queue,
time limits, retries while the database is away, and what an unexpected error does.

Modelled on Sentry's ``instrumented_task``: the tasks stay thin wrappers that take ids and call
services, and none of them spells out its own failure handling.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from celery import shared_task
from django.db import InterfaceError, OperationalError

from imagesearch.celery import DATABASE_RETRY

logger = logging.getLogger(__name__)


def app_task(
    name: str, *, queue: str = "default", soft_time_limit: int | None = 600, time_limit: int | None = 660,
    retry_database: bool = True, acks_late: bool | None = None, chunk_of: str | None = None,
):
    """Declare a task named ``name`` (``app.what``) on ``queue``.

    ``acks_late``: left unset, the app's setting (``task_acks_late``) holds. ``retry_database``: when
    the database cannot be reached, the task is retried with ``DATABASE_RETRY``'s back-off (about 8
    minutes in all: longer than the embedded PostgreSQL takes to restart). ``chunk_of``: the task
    takes the id of a chunk of this model ("app.Model", see ``jobs.job_chunk_commit``); an
    unexpected exception (a bug, not bad input, which services report per item) then closes the
    chunk's job as failed with the error, so it never shows "running" forever. Either way the
    exception is logged with the task's arguments and raised again, for Celery to record.
    """

    def declare(run: Callable):
        @functools.wraps(run)
        def task(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            except (OperationalError, InterfaceError):
                raise  # retried (autoretry_for): the database may be back in a moment
            except Exception as exc:
                logger.exception("task %s%r failed", name, args)
                if chunk_of is not None:
                    _chunk_job_fail(chunk_of, args[0] if args else kwargs["chunk_id"], exc)
                raise

        options = dict(name=name, queue=queue)
        if acks_late is not None:  # else the app's task_acks_late (a task of a killed worker is redelivered)
            options["acks_late"] = acks_late
        if soft_time_limit is not None:
            options.update(soft_time_limit=soft_time_limit, time_limit=time_limit)
        if retry_database:
            options.update(DATABASE_RETRY)
        return shared_task(**options)(task)

    return declare


def _chunk_job_fail(chunk_model: str, chunk_id: int, exc: Exception) -> None:
    from django.apps import apps

    from imagesearch.services.jobs import job_fail, job_of_chunk

    job_id = job_of_chunk(apps.get_model(chunk_model), chunk_id=chunk_id)
    if job_id:
        job_fail(job_id=job_id, exc=exc)
