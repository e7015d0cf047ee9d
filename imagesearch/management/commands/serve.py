"""python manage.py serve: run the whole product (database, migrations, worker, web).

Children run in their own sessions so a Ctrl-C in the terminal reaches only this
process, which then stops them in order: the web server first (no new work), then
the Celery worker (warm shutdown: running tasks finish or are requeued), then the
embedded database (a clean "fast" shutdown). Children also get SIGTERM from the
kernel if this process dies abruptly, so none is left behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from imagesearch.services.accounts import admin_ensure

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel to SIGTERM us when serve dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the normal shutdown path still stops the children


class Command(BaseCommand):
    help = "Start the embedded database if needed, migrate, and run a Celery worker and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("IMAGESEARCH_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("IMAGESEARCH_PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2")))
        parser.add_argument("--concurrency", type=int, default=settings.CELERY_WORKER_CONCURRENCY,
                            help="Celery worker processes")
        parser.add_argument("--no-worker", action="store_true", help="run no Celery worker here")
        parser.add_argument("--stop-timeout", type=float, default=30.0,
                            help="seconds to wait for children to stop before killing them")

    def handle(self, *args, **options):
        self._stopping = False
        self._force = False  # set by a second Ctrl-C: stop waiting for a graceful stop
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        password = admin_ensure(
            username=os.environ.get("IMAGESEARCH_ADMIN_USER", "admin"),
            password=os.environ.get("IMAGESEARCH_ADMIN_PASSWORD"),
        )
        if password:
            self.stdout.write(self.style.WARNING(
                f"Created the admin account 'admin' with password: {password}\n"
                "It is shown only this once; change it after logging in."
            ))
        connections.close_all()  # children open their own connections

        env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "IMAGESEARCH_DATA_DIR": str(settings.DATA_DIR)}
        children: dict[str, subprocess.Popen] = {}
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        try:
            if not options["no_worker"]:
                children["worker"] = self._spawn(self._worker_command(options), env)
                from imagesearch.tasks import sweep_media

                sweep_media.delay()  # files orphaned by a previous crash, if any
            children["web"] = self._spawn(self._web_command(options), env)
            self.stdout.write(self.style.SUCCESS(
                f"Image search is running at http://{options['host']}:{options['port']}/ — press Ctrl-C to stop."
            ))
            failed = self._supervise(children)
        finally:
            self._stop_all(children, options["stop_timeout"])
        if failed:
            raise CommandError(f"The {failed} process exited unexpectedly; everything was stopped.")
        self.stdout.write("Stopped.")

    def _request_stop(self, signum, frame) -> None:
        if self._stopping:
            self._force = True
        self._stopping = True

    @staticmethod
    def _spawn(command: list[str], env: dict) -> subprocess.Popen:
        return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent)

    @staticmethod
    def _worker_command(options) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--loglevel", "INFO",
            "--queues", "default,gpu", "--concurrency", str(options["concurrency"]), "--hostname", "local@%h",
        ]

    @staticmethod
    def _web_command(options) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "imagesearch.wsgi:application",
            "--bind", f"{options['host']}:{options['port']}", "--workers", str(options["web_workers"]),
            "--worker-class", "gthread", "--threads", "4", "--timeout", "120", "--graceful-timeout", "20",
            "--access-logfile", "-",
        ]

    def _supervise(self, children: dict[str, subprocess.Popen]) -> str | None:
        """Wait for Ctrl-C/SIGTERM; returns the name of a child that died on its own."""
        while not self._stopping:
            for name, process in children.items():
                if process.poll() is not None:
                    return name
            time.sleep(0.2)
        return None

    def _stop_all(self, children: dict[str, subprocess.Popen], timeout: float) -> None:
        for name in ("web", "worker"):
            process = children.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)  # graceful: gunicorn drains, Celery warm-stops
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline and not self._force:
                time.sleep(0.1)
        for process in children.values():
            # Whatever is left (stuck tasks, pool children): kill the whole group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
