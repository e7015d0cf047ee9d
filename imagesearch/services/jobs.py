"""The job engine: background jobs recorded so the UI can show them (status, progress, rate, log,
issues), the one place where a job ends (``job_finish``), and jobs cut into chunks (an import's
``IngestChunk``, an embedding refresh's ``ranking.EmbeddingChunk``): how their chunks run
(``job_chunks_run``) and how the last chunk to commit closes its job (``job_chunk_commit``)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Case, ExpressionWrapper, F, FloatField, Model, QuerySet, Value, When
from django.db.models.functions import Cast, Extract, Greatest
from django.utils import timezone

from imagesearch.models import Job, JobIssue


def job_create(
    *, kind: str, total: int = 0, params: dict | None = None, created_by=None, message: str = ""
) -> Job:
    return Job.objects.create(
        kind=kind, progress_total=total, params=params or {}, created_by=created_by, message=message
    )


LOG_LINES = 50  # kept per job


def job_start(*, job_id: int) -> None:
    """Mark a queued job running (a no-op for a job already running or finished); note the worker."""
    worker = current_worker()
    Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=timezone.now(), updated_at=timezone.now()
    )
    if worker:
        Job.objects.filter(pk=job_id).exclude(worker=worker).update(worker=worker)


def job_log(*, job_id: int, line: str, as_message: bool = False) -> None:
    """Append a line to the job's log (the last LOG_LINES are kept); it also counts as a sign of life.

    ``as_message``: the line also becomes the job's message (unless the job has ended), so that
    what a page shows as the job's latest state is the same from the message and from the log.
    """
    stamped = f"{timezone.now():%H:%M:%S} {line}"
    with transaction.atomic():
        job = Job.objects.select_for_update().only("log", "status").filter(pk=job_id).first()
        if job is None:
            return
        lines = (job.log.splitlines() + [stamped])[-LOG_LINES:]
        updates = {"log": "\n".join(lines), "updated_at": timezone.now()}
        if as_message and job.status not in Job.FINISHED:
            updates["message"] = line
        worker = current_worker()
        if worker:
            updates["worker"] = worker
        Job.objects.filter(pk=job_id).update(**updates)


# Job.result key: {part: items done} of the parts under way (import chunks not committed yet)
PARTS_UNDER_WAY = "parts_under_way"


def job_advance(*, job_id: int, done: int, part: str = "") -> None:
    """Add ``done`` items to the job's progress and recompute its rate (items/s).

    ``part``: these are the items of a part that commits now, in the caller's transaction;
    what ``job_report_part`` showed of it meanwhile is taken back, so its items count once.
    """
    if not part:
        _progress_add(job_id, done)
        return
    with transaction.atomic():
        job = Job.objects.select_for_update().only("result").filter(pk=job_id).first()
        if job is None:
            return
        result = dict(job.result or {})
        parts = dict(result.pop(PARTS_UNDER_WAY, None) or {})
        shown = parts.pop(part, 0)
        if parts:
            result[PARTS_UNDER_WAY] = parts
        _progress_add(job_id, done - shown, result=result)


def job_report_part(*, job_id: int, part: str, done: int, pending: QuerySet | None = None) -> bool:
    """Show that ``done`` items of a part still under way are done (an import chunk, whose rows and
    count commit only at its end), so the job's progress moves within a part: a 54-file import
    is one chunk. Returns whether it counted.

    The part's count is replaced, not added to: a redelivered part reports from 0 again, and
    ``job_advance(part=...)`` takes the count back when the part commits, so nothing counts twice.
    ``pending``: a query that finds a row while the part has not committed. It is read under the
    job's row lock, which a part's commit holds too (the chunk services lock the job row), so a
    late report from a second run of a part already committed counts nothing.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().only("result", "status").filter(pk=job_id).first()
        if job is None or job.is_finished or (pending is not None and not pending.exists()):
            return False
        result = dict(job.result or {})
        parts = dict(result.get(PARTS_UNDER_WAY) or {})
        shown = parts.get(part, 0)
        parts[part] = done
        result[PARTS_UNDER_WAY] = parts
        _progress_add(job_id, done - shown, result=result)
    return True


def job_part_reporter(
    *, job_id: int, part: str, size: int, pending: QuerySet | None = None, every_seconds: float = 1.0,
) -> Callable[[int], None]:
    """A function to call with the count of a part's items done, after each item: it reports the
    first one at once (the bar leaves 0 %), then at most every ``every_seconds`` (the pages poll
    every 2 s, and each report takes the job's row lock), and never the last: the part's commit
    counts it. See ``job_report_part``."""
    last_report: float | None = None

    def report(done: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if done >= size or (last_report is not None and now - last_report < every_seconds):
            return
        last_report = now
        job_report_part(job_id=job_id, part=part, done=done, pending=pending)

    return report


def _progress_add(job_id: int, done: int, *, result: dict | None = None) -> None:
    now = timezone.now()
    updates = {
        "progress_done": F("progress_done") + done,
        "progress_at": now,
        "updated_at": now,  # also a sign of life (jobs_fail_orphaned)
        # items per second since the start, in the same statement (no read back)
        "rate": Case(When(started_at__isnull=True, then=F("rate")), default=ExpressionWrapper(
            Cast(F("progress_done") + done, FloatField()) / Greatest(
                Extract(Value(now) - F("started_at"), "epoch"), Value(1e-3)), output_field=FloatField())),
    }
    if result is not None:
        updates["result"] = result
    worker = current_worker()
    if worker:
        updates["worker"] = worker
    Job.objects.filter(pk=job_id).update(**updates)


JobEndHook = Callable[[int, str, str], None]
_end_hooks: list[JobEndHook] = []


def job_end_hook(hook: JobEndHook) -> JobEndHook:
    """Register ``hook(job_id, status, reason)``, called when a job ends early (failed or cancelled),
    in the transaction that closes it: what an app must undo with its job (ranking fails the version
    a training job was training, and drops an embedding job's pending chunks). Apps register their
    hooks in ``AppConfig.ready``, so the jobs module needs to know none of them."""
    _end_hooks.append(hook)
    return hook


def job_finish(
    *, job_id: int, status: str = Job.Status.SUCCEEDED, message: str = "", error: str = "",
    result: dict | None = None, only_if: dict | None = None, now=None,
) -> bool:
    """Close a job (the one place where a job ends); returns whether this call closed it. A job
    already finished (cancelled, say) keeps its status; ``only_if``: further field values the job
    must still have (the orphan check: nothing moved since it looked).

    Parts still under way (``job_report_part``) will not commit: their items leave the count. The
    closing message or error is also the log's last line, so the log does not end on a step long done.
    A failed or cancelled job runs the end-of-job hooks (``job_end_hook``)."""
    now = now or timezone.now()
    with transaction.atomic():
        job = (Job.objects.select_for_update().only("result", "status", "log").filter(pk=job_id, **(only_if or {}))
               .exclude(status__in=Job.FINISHED).first())
        if job is None:
            return False
        updates = {"status": status, "message": message, "error": error, "finished_at": now}
        closing = error or message
        if closing:
            updates["log"] = "\n".join((job.log.splitlines() + [f"{now:%H:%M:%S} {closing}"])[-LOG_LINES:])
        under_way = (job.result or {}).get(PARTS_UNDER_WAY) or {}
        if under_way:
            updates["progress_done"] = F("progress_done") - sum(under_way.values())
            updates["result"] = {key: value for key, value in job.result.items() if key != PARTS_UNDER_WAY}
        if result is not None:
            updates["result"] = result
        Job.objects.filter(pk=job_id).update(**updates)
        if status in (Job.Status.FAILED, Job.Status.CANCELLED):
            for hook in _end_hooks:
                hook(job_id, status, error or message)
    return True


def job_fail(*, job_id: int, exc: BaseException) -> str:
    """Close a job as failed by an unexpected error; returns the error text it recorded."""
    error = f"{type(exc).__name__}: {exc}"
    job_finish(job_id=job_id, status=Job.Status.FAILED, error=error)
    return error


def job_cancel(*, job_id: int, message: str = "Cancelled.") -> None:
    """Close the job as cancelled. Its tasks look at the job before (and, training, during) their work
    and stop; what they finished stays (embeddings done are kept, so a new refresh resumes)."""
    job_finish(job_id=job_id, status=Job.Status.CANCELLED, message=message)


WORKER_LOST = ("The worker {worker} that ran this job stopped answering, and the job made no progress for "
               "{seconds} s: it is reported failed. Start it again (finished parts are kept).")


def jobs_fail_orphaned(*, online_workers: set[str], now=None) -> list[int]:
    """Report running jobs whose worker is gone as failed, so none shows "running" forever.

    ``online_workers``: the hostnames that answer now (``imagesearch.workers``).
    A job is orphaned when the worker that last worked on it has been missing from
    these answers for JOBS_ORPHAN_GRACE_SECONDS (one lost reply is not enough) and
    the job made no progress for as long. With Redis, a task of a dead worker is
    delivered again later; it then finds its job finished and stops, and starting
    the job again finishes it.
    """
    now = now or timezone.now()
    grace = settings.JOBS_ORPHAN_GRACE_SECONDS
    cutoff = now - timedelta(seconds=grace)
    failed = []
    running = Job.objects.filter(status=Job.Status.RUNNING).exclude(worker="")
    for job in running.exclude(worker__in=online_workers).only("pk", "worker", "updated_at"):
        missing_since = _worker_missing_since(job.worker, now)
        if job.updated_at >= cutoff or missing_since >= cutoff:
            continue
        error = WORKER_LOST.format(worker=job.worker, seconds=grace)
        # only if nothing moved since we looked (another worker may have picked it up)
        if job_finish(job_id=job.pk, status=Job.Status.FAILED, error=error, now=now,
                      only_if={"status": Job.Status.RUNNING, "worker": job.worker, "updated_at": job.updated_at}):
            failed.append(job.pk)
    for worker in online_workers:
        cache.delete(_MISSING_KEY.format(worker=worker))
    return failed


_MISSING_KEY = "jobs-worker-missing-{worker}"


def _worker_missing_since(worker: str, now):
    """When this worker was first seen missing (now, if this is the first time)."""
    key = _MISSING_KEY.format(worker=worker)
    cache.add(key, now, timeout=24 * 3600)
    return cache.get(key, now)


def current_worker() -> str:
    """The hostname of the Celery worker running this code, or "" outside a task."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    return (getattr(request, "hostname", None) or "") if current_task else ""


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


# --- jobs cut into chunks ------------------------------------------------------------------
# A chunk model is a ``imagesearch.models.JobChunk``: a ``job``, a ``status`` (pending, done) and a ``size``
# (its items). Each chunk is one Celery task, idempotent: what it writes commits with its "done" mark.


def job_chunks_run(
    chunk_model: type[Model], *, job_id: int, process: Callable[..., None], task=None,
    on_chunk_done: Callable[[], None] | None = None,
) -> int:
    """Run the job's pending chunks, in the order they were made; returns how many.

    With ``task`` (a Celery task taking a chunk id), each is queued once the transaction commits, so
    they spread over every worker and see the rows that made them. Without, ``process(chunk_id=...)``
    runs them one after the other in this process (a command's ``--inline``, the tests), calling
    ``on_chunk_done`` after each."""
    chunk_ids = list(chunk_model.objects.filter(job_id=job_id, status=chunk_model.Status.PENDING)
                     .order_by("pk").values_list("pk", flat=True))
    if task is not None:
        transaction.on_commit(lambda: [task.delay(chunk_id) for chunk_id in chunk_ids])
        return len(chunk_ids)
    for chunk_id in chunk_ids:
        process(chunk_id=chunk_id)
        if on_chunk_done:
            on_chunk_done()
    return len(chunk_ids)


def job_chunk_start(chunk_model: type[Model], *, chunk_id: int):
    """The chunk to work on, with its job, which is marked running; None when there is nothing to do:
    the chunk is gone (with its cancelled job) or done (a redelivered task), or its job has ended."""
    chunk = chunk_model.objects.select_related("job").filter(pk=chunk_id).first()
    if chunk is None or chunk.status == chunk_model.Status.DONE or chunk.job.is_finished:
        return None
    job_start(job_id=chunk.job_id)
    return chunk


def job_of_chunk(chunk_model: type[Model], *, chunk_id: int) -> int | None:
    return chunk_model.objects.filter(pk=chunk_id).values_list("job_id", flat=True).first()


def job_chunks_pending(chunk_model: type[Model], *, job_id: int) -> bool:
    return chunk_model.objects.filter(job_id=job_id, status=chunk_model.Status.PENDING).exists()


class ChunkCommit(enum.Enum):
    SKIPPED = "skipped"  # done by another run first, or its job has ended: nothing of this run is kept
    COMMITTED = "committed"
    LAST = "last"  # committed, and no chunk of its job is pending: the job is done


def job_chunk_commit(
    chunk_model: type[Model], *, chunk_id: int, part: str,
    write: Callable[[Model, Job], Iterable[str]] | None = None, close: Callable[[Job], None] | None = None,
) -> ChunkCommit:
    """Commit one chunk's work, once (the one place where a chunk is written).

    Under the chunk's row lock and its job's, so that the chunks of one job commit one at a time and
    exactly one of them sees none pending. Unless the chunk is done already or its job has ended:
    ``write(chunk, job)`` writes the chunk's rows and returns the chunk's fields it set (its counts);
    the chunk is marked done and its items count in the job's progress, replacing what
    ``job_part_reporter`` showed of ``part``; after the last chunk, ``close(job)`` closes the job in
    the same transaction. (A job whose closing cannot run in a transaction, an index build, is closed
    by the caller on ``ChunkCommit.LAST``.)"""
    with transaction.atomic():
        chunk = chunk_model.objects.select_for_update().filter(pk=chunk_id).first()
        if chunk is None:
            return ChunkCommit.SKIPPED
        job = Job.objects.select_for_update().get(pk=chunk.job_id)
        if chunk.status == chunk_model.Status.DONE or job.is_finished:
            return ChunkCommit.SKIPPED
        fields = ["status", *(write(chunk, job) if write is not None else ())]
        chunk.status = chunk_model.Status.DONE
        if hasattr(chunk, "finished_at"):
            chunk.finished_at = timezone.now()
            fields.append("finished_at")
        chunk.save(update_fields=fields)
        job_advance(job_id=job.pk, done=chunk.size, part=part)
        if job_chunks_pending(chunk_model, job_id=job.pk):
            return ChunkCommit.COMMITTED
        if close is not None:
            close(job)
        return ChunkCommit.LAST
