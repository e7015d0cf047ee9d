"""Asking the broker which Celery workers are online."""

from __future__ import annotations


def workers_online(queue: str | None = None, timeout: float = 1.0) -> bool:
    """True when at least one worker answers (and, with ``queue``, consumes that queue)."""
    from imagesearch.celery import app

    try:
        if queue is None:
            return bool(app.control.ping(timeout=timeout))
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # broker unreachable: callers fall back to working in-process
        return False
    return any(q.get("name") == queue for queues in replies.values() for q in queues)
