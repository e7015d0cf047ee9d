"""Recording background jobs so the UI can show them (status, progress, rate)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db.models import F
from django.utils import timezone

from imagesearch.models import Job, JobIssue


def job_create(
    *, kind: str, total: int = 0, params: dict | None = None, created_by=None, message: str = ""
) -> Job:
    return Job.objects.create(
        kind=kind, progress_total=total, params=params or {}, created_by=created_by, message=message
    )


def job_start(*, job_id: int) -> None:
    """Mark a queued job running (a no-op for a job already running or finished)."""
    Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=timezone.now()
    )


def job_advance(*, job_id: int, done: int) -> None:
    """Add ``done`` items to the job's progress and recompute its rate (items/s)."""
    Job.objects.filter(pk=job_id).update(progress_done=F("progress_done") + done, updated_at=timezone.now())
    job = Job.objects.only("progress_done", "started_at").get(pk=job_id)
    if job.started_at:
        elapsed = max((timezone.now() - job.started_at).total_seconds(), 1e-3)
        Job.objects.filter(pk=job_id).update(rate=job.progress_done / elapsed)


def job_finish(
    *, job_id: int, status: str = Job.Status.SUCCEEDED, message: str = "", error: str = "",
    result: dict | None = None,
) -> None:
    """Close a job; a job already finished (cancelled, say) keeps its status."""
    updates = {"status": status, "message": message, "error": error, "finished_at": timezone.now()}
    if result is not None:
        updates["result"] = result
    Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(**updates)


def job_fail(*, job_id: int, exc: BaseException) -> str:
    """Close a job as failed by an unexpected error; returns the error text it recorded."""
    error = f"{type(exc).__name__}: {exc}"
    job_finish(job_id=job_id, status=Job.Status.FAILED, error=error)
    return error


def job_cancel(*, job_id: int, message: str = "Cancelled.") -> None:
    job_finish(job_id=job_id, status=Job.Status.CANCELLED, message=message)


def job_record_issues(*, job_id: int, issues: list[tuple[str, str]]) -> None:
    """Store (source, reason) pairs for items the job skipped."""
    JobIssue.objects.bulk_create(JobIssue(job_id=job_id, source=s, message=m) for s, m in issues)


def job_wait(*, job_id: int, poll_seconds: float = 0.5, on_poll: Callable[[Job], None] | None = None) -> Job:
    """Block until the job finishes, calling ``on_poll`` with its latest state."""
    while True:
        job = Job.objects.get(pk=job_id)
        if on_poll:
            on_poll(job)
        if job.is_finished:
            return job
        time.sleep(poll_seconds)
