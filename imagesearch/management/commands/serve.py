"""python manage.py serve: run the whole product (database, broker, migrations, worker, web).

Children run in their own sessions so a Ctrl-C in the terminal reaches only this
process, which then stops them in order: the web server first (no new work), then
the Celery worker (warm shutdown: running tasks finish or are requeued), then the
embedded Redis and the embedded database (clean shutdowns). Children also get SIGTERM
from the kernel if this process dies abruptly, so none is left behind.

While it runs, ``serve`` supervises: a child that exits on its own is started again
(a worker under a new name, so that the jobs of the lost one are recognised as
orphaned, after handing its unfinished tasks back on the embedded Redis), and so are
the embedded Redis and PostgreSQL if they die. Only a child that keeps exiting stops
everything.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections import deque

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from imagesearch import embedded_db
from imagesearch.embedded_redis import EmbeddedRedis, die_with_parent
from imagesearch.services.accounts import admin_ensure

RESTART_WINDOW_SECONDS = 60
MAX_RESTARTS_IN_WINDOW = 5  # more than this in the window: a crash loop, stop and say so
SERVICE_CHECK_SECONDS = 2.0  # how often the embedded Redis and PostgreSQL are checked


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
        self._redis = EmbeddedRedis(settings.EMBEDDED_REDIS_DIR) if settings.EMBEDDED_REDIS else None
        self._say("Starting: the database and broker, migrations, static files…")
        embedded_db.embedded_postgres_for_this_process()  # manage.py has started it; call_command("serve") too
        if self._redis:
            self._redis.ensure()
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

        self._options = options
        self._env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL,
                     "IMAGESEARCH_DATA_DIR": str(settings.DATA_DIR)}
        children: dict[str, subprocess.Popen] = {}
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        failure = None
        try:
            if not options["no_worker"]:
                children["worker"] = self._start("worker")
                from imagesearch.tasks import sweep_media

                sweep_media.delay()  # files orphaned by a previous crash, if any
            children["web"] = self._start("web")
            self.stdout.write(self.style.SUCCESS(
                f"Image search is running at http://{options['host']}:{options['port']}/ — press Ctrl-C to stop."
            ))
            failure = self._supervise(children)
        finally:
            self._stop_all(children, options["stop_timeout"])
            if self._redis:
                self._redis.stop()
        if failure:
            raise CommandError(f"{failure} Everything was stopped.")
        self.stdout.write("Stopped.")

    def _say(self, text: str) -> None:
        """A line of serve's own, with the time (its children's log lines carry theirs)."""
        self.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} serve: {text}")

    def _request_stop(self, signum, frame) -> None:
        if self._stopping:
            self._force = True
        self._stopping = True

    def _start(self, name: str) -> subprocess.Popen:
        if name == "worker" and self._redis:
            # the broker is ours and no worker runs: what a lost worker held can run again now
            from imagesearch.workers import broker_requeue_unacknowledged

            if requeued := broker_requeue_unacknowledged():
                self._say(f"Handed {requeued} unfinished task(s) of a stopped worker back to the queue.")
        command = self._worker_command(self._options) if name == "worker" else self._web_command(self._options)
        return subprocess.Popen(command, env=self._env, start_new_session=True, preexec_fn=die_with_parent)

    @staticmethod
    def _worker_command(options) -> list[str]:
        # A new name at each start: a job whose worker is missing is failed after the grace period, which
        # needs the lost worker's name to stay missing (a replacement called the same would hide it).
        return [
            sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--loglevel", "INFO",
            "--queues", "default,gpu", "--concurrency", str(options["concurrency"]),
            "--hostname", f"local-{secrets.token_hex(3)}@%h",
            # the periodic checks (orphaned jobs, images lacking embeddings, stray files) run in this worker
            "--beat", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule"),
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
        """Keep everything running until Ctrl-C/SIGTERM; returns why it gave up, if it did."""
        restarts: dict[str, deque] = {}
        next_check = time.monotonic() + SERVICE_CHECK_SECONDS
        while not self._stopping:
            for name, process in list(children.items()):
                if process.poll() is None:
                    continue
                times = restarts.setdefault(name, deque(maxlen=MAX_RESTARTS_IN_WINDOW))
                if len(times) == times.maxlen and time.monotonic() - times[0] < RESTART_WINDOW_SECONDS:
                    return (f"The {name} process exited {times.maxlen + 1} times within {RESTART_WINDOW_SECONDS} s "
                            f"(last exit code {process.returncode}).")
                times.append(time.monotonic())
                self._say(f"The {name} process exited (code {process.returncode}); starting it again.")
                _kill_group(process)  # pool children it left behind
                children[name] = self._start(name)
            if time.monotonic() >= next_check:
                if failure := self._check_services():
                    return failure
                next_check = time.monotonic() + SERVICE_CHECK_SECONDS
            time.sleep(0.2)
        return None

    def _check_services(self) -> str | None:
        """Start the embedded Redis or PostgreSQL again if it died; returns why not, if it cannot."""
        if self._redis and not self._redis.running():
            self._say("The embedded Redis stopped answering; starting it again.")
            try:
                self._redis.ensure()
            except RuntimeError as exc:
                return str(exc)
        if getattr(settings, "EMBEDDED_DATABASE", False) and not embedded_db.embedded_postgres_running(
                settings.DATA_DIR):
            self._say("The embedded PostgreSQL stopped; starting it again (it recovers from its log).")
            try:
                embedded_db.embedded_postgres_restart(settings.DATA_DIR)
            except Exception as exc:  # noqa: BLE001 - reported, then everything stops
                return f"The embedded PostgreSQL could not be started again ({exc}); see {settings.DATA_DIR / 'pgdata' / 'log'}."
            self._say("The embedded PostgreSQL is running again.")
        return None

    def _stop_all(self, children: dict[str, subprocess.Popen], timeout: float) -> None:
        for name in ("web", "worker"):
            process = children.get(name)
            if process is None or process.poll() is not None:
                continue
            self._say("Stopping the web server…" if name == "web" else
                      f"Stopping the worker: it finishes its current tasks first (up to {timeout:.0f} s; "
                      "Ctrl-C again stops it now)…")
            process.send_signal(signal.SIGTERM)  # graceful: gunicorn drains, Celery warm-stops
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline and not self._force:
                time.sleep(0.1)
        for process in children.values():
            _kill_group(process)  # whatever is left (stuck tasks, pool children)
            process.wait()


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
