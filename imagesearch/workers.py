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
        inspect = app.control.inspect(timeout=timeout)
        queues = inspect.active_queues() or {}
        gpus = app.control.broadcast("gpu", reply=True, timeout=timeout) or []
        active = inspect.active() or {}
    except Exception:  # noqa: BLE001 - broker unreachable
        return None
    gpu_by_host = {host: (answer or {}).get("gpu", "") for reply in gpus for host, answer in reply.items()}
    return [
        {"hostname": host, "queues": sorted(q["name"] for q in host_queues), "gpu": gpu_by_host.get(host, ""),
         "active_tasks": len(active.get(host) or [])}
        for host, host_queues in sorted(queues.items())
    ]
