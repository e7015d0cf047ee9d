"""Asking the broker which Celery workers are online."""

from __future__ import annotations


def workers_online(queue: str | None = None, timeout: float = 1.0) -> bool:
    """True when at least one worker answers (and, with ``queue``, consumes that queue)."""
    from imagesearch.celery import app

    try:
        if queue is None:
            return bool(app.control.ping(timeout=timeout, limit=1))  # the first answer is enough
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # broker unreachable: callers fall back to working in-process
        return False
    return any(q.get("name") == queue for queues in replies.values() for q in queues)


def workers_status(timeout: float = 1.0) -> list[dict] | None:
    """Every worker that answers: hostname, the queues it consumes, its GPU ("" for none), tasks running.

    None when the broker cannot be reached (then nothing is known about the workers).
    """
    from imagesearch.celery import app

    try:
        replies = app.control.broadcast("worker_status", reply=True, timeout=timeout) or []
    except Exception:  # noqa: BLE001 - broker unreachable
        return None
    answers = {host: answer or {} for reply in replies for host, answer in reply.items()}
    return [
        {"hostname": host, "queues": answer.get("queues", []), "gpu": answer.get("gpu", ""),
         "active_tasks": answer.get("active_tasks", 0)}
        for host, answer in sorted(answers.items())
    ]


def workers_check_jobs(timeout: float = 1.0) -> list[dict] | None:
    """Ask which workers answer and report the running jobs of workers that are gone as failed.

    Returns the workers (as ``workers_status``), or None when the broker cannot be reached (then no
    job is judged). The dashboard, the periodic check and a command following a job all call this.
    """
    from imagesearch.services.jobs import jobs_fail_orphaned

    workers = workers_status(timeout=timeout)
    if workers is not None:
        jobs_fail_orphaned(online_workers={w["hostname"] for w in workers})
    return workers


def broker_requeue_unacknowledged() -> int:
    """Put every task that a worker took but did not acknowledge back on its queue; returns how many.

    Only for a broker that no live worker uses: ``serve`` calls it on the embedded Redis before it
    starts a worker (the one it replaces was killed, or the machine went down), so the tasks run
    now instead of after the visibility timeout. Every task is idempotent, so a task that had in
    fact finished its work runs again harmlessly.
    """
    from kombu.utils.encoding import bytes_to_str

    from imagesearch.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        tags = [bytes_to_str(tag) for tag in channel.client.hkeys(channel.unacked_key)]
        for tag in tags:
            channel.qos.restore_by_tag(tag)
    return len(tags)
