"""`manage.py serve` as a user runs it: a fresh data folder, Ctrl-C, and a second start."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, process: subprocess.Popen, timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{process.log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def processes_using(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join(proc.info["cmdline"] or []) + str((proc.info["environ"] or {}).get("IMAGESEARCH_DATA_DIR"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(data_dir) in text:
            found.append(proc)
    return found


def start(data_dir: Path, port: int, **extra_env: str) -> subprocess.Popen:
    """serve, its output (and its children's: a busy worker logs a lot) going to a file beside the data."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(IMAGESEARCH_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="imagesearch.settings",
               WEB_WORKERS="1", CELERY_WORKER_CONCURRENCY="1", **extra_env)
    log_path = data_dir.parent / f"serve-{time.monotonic_ns()}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log_path = log_path
    return process


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=90)
    output = process.log_path.read_text()
    assert process.returncode == 0, output
    return output


def test_serve_starts_everything_and_ctrl_c_stops_everything(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    server = start(data_dir, port)
    try:
        login = wait_for_page(f"http://127.0.0.1:{port}/accounts/login/", server)
        assert b"Log in" in login
        css = wait_for_page(f"http://127.0.0.1:{port}/static/css/app.css", server)
        assert b".grid" in css
        children = processes_using(data_dir)
        names = " ".join(" ".join(p.cmdline()) for p in children)
        assert "gunicorn" in names and "celery" in names and "postgres" in names and "redis-server" in names
    finally:
        first_output = stop(server)
    assert "Created the admin account 'admin' with password:" in first_output
    time.sleep(0.5)
    assert processes_using(data_dir) == []

    # The next start finds its data and works; the admin password is not shown again.
    server = start(data_dir, port)
    try:
        wait_for_page(f"http://127.0.0.1:{port}/accounts/login/", server)
    finally:
        second_output = stop(server)
    assert "Created the admin account" not in second_output
    time.sleep(0.5)
    assert processes_using(data_dir) == []


def serve_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(IMAGESEARCH_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="imagesearch.settings",
               RANKING_AUTO_TRAIN="0")  # the first model's training would hold the test's one worker process
    return env


def worker_main(data_dir: Path) -> psutil.Process | None:
    """The Celery worker's main process (the one serve started; its pool children are its own children)."""
    for proc in processes_using(data_dir):
        try:
            cmd = " ".join(proc.cmdline())
            parent = proc.parent()
            if "celery" in cmd and parent and "manage.py" in " ".join(parent.cmdline()):
                return proc
        except psutil.Error:  # gone (or a zombie) since it was listed
            continue
    return None


def workers_answering(data_dir: Path) -> list:
    from celery import Celery

    from imagesearch import embedded_redis

    # Celery would take CELERY_BROKER_URL from the environment over the broker given here
    saved = os.environ.pop("CELERY_BROKER_URL", None)
    try:
        app = Celery(broker=embedded_redis.broker_url(data_dir), set_as_current=False)
        try:
            return app.control.ping(timeout=1.0)
        finally:
            app.close()
    finally:
        if saved is not None:
            os.environ["CELERY_BROKER_URL"] = saved


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class OutputReader:
    """A process's output, read as it comes (its progress bar ends lines with carriage returns)."""

    def __init__(self, process: subprocess.Popen):
        self._chunks: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        while chunk := stream.read(1):
            self._chunks.append(chunk)

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "".join(self._chunks)

    def progress(self) -> int:
        """Items done in the last progress bar line, e.g. "Importing:  1%|  | 6/600"."""
        done = re.findall(r"\| *(\d+)/\d+", "".join(self._chunks))
        return int(done[-1]) if done else 0


def test_serve_replaces_a_killed_worker_and_database_and_the_import_finishes(tmp_path):
    """kill -9 of the worker during an import: serve starts another under a new name, hands the lost
    worker's tasks back, and the import completes; kill -9 of PostgreSQL: serve starts it again and keeps
    serving. A serve killed with SIGKILL leaves no Redis, worker or web server behind."""
    from tests import images

    data_dir = tmp_path / "data"
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(240):  # 120 chunks of two: the worker is killed in the middle of them
        (folder / f"p{i}.png").write_bytes(images.png(seed=i, width=64, height=48))
    port = free_port()
    server = start(data_dir, port, RANKING_AUTO_TRAIN="0")
    importer = None
    try:
        wait_for_page(f"http://127.0.0.1:{port}/accounts/login/", server)
        wait_until(lambda: workers_answering(data_dir), 90, "the worker to answer")
        first_worker = worker_main(data_dir)
        assert first_worker
        importer = subprocess.Popen(
            [sys.executable, "manage.py", "import_images", str(folder), "--chunk-size", "2"], cwd=ROOT,
            env=serve_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        importer_output = OutputReader(importer)
        # the worker is busy with the import's chunks once the command shows progress (on a loaded machine
        # the command took more than 3 s to start: a worker killed after a fixed wait had not seen the import)
        wait_until(lambda: importer_output.progress() >= 2 or importer.poll() is not None, 120, "the import to start")
        assert importer.poll() is None, importer_output.text()
        first_name = next(arg for arg in first_worker.cmdline() if arg.startswith("local-"))
        for proc in [first_worker, *first_worker.children(recursive=True)]:
            proc.kill()  # the whole worker, as the OOM killer or a kill -9 of its group would
        second_worker = wait_until(lambda: (w := worker_main(data_dir)) and w.pid != first_worker.pid and w, 60,
                                   "a new worker")
        assert first_name not in " ".join(second_worker.cmdline())  # a new name: the old one stays missing
        importer.wait(timeout=240)
        output = importer_output.text()
        assert importer.returncode == 0, output
        assert "Imported 240 images; 0 already in the library; 0 failed." in output, output
        assert "No Celery worker answered" not in output

        postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        wait_until(lambda: (data_dir / "pgdata" / "postmaster.pid").exists()
                   and int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]) != postmaster
                   and psutil.pid_exists(int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])),
                   60, "PostgreSQL started again")
        check = subprocess.run([sys.executable, "manage.py", "shell", "-c",
                                "from imagesearch.models import Image; print('images', Image.objects.count())"],
                               cwd=ROOT, env=serve_env(data_dir), capture_output=True, text=True, timeout=120)
        assert "images 240" in check.stdout, check.stdout + check.stderr
        assert server.poll() is None
        wait_for_page(f"http://127.0.0.1:{port}/accounts/login/", server)
    finally:
        if importer and importer.poll() is None:
            importer.kill()
        server.kill()  # SIGKILL: no clean-up code of serve runs
        server.wait()
    wait_until(lambda: not [p for p in processes_using(data_dir) if "postgres" not in " ".join(p.info["cmdline"] or [])],
               30, "the children of a killed serve to go")
    for proc in processes_using(data_dir):  # the embedded PostgreSQL outlives a SIGKILLed serve, as before
        try:
            proc.terminate()
        except psutil.Error:
            pass
