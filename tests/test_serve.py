"""`manage.py serve` as a user runs it: a fresh data folder, Ctrl-C, and a second start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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
            raise AssertionError(f"serve exited early:\n{process.stdout.read()}")
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


def start(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(IMAGESEARCH_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="imagesearch.settings",
               WEB_WORKERS="1", CELERY_WORKER_CONCURRENCY="1")
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=90)
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
        assert "gunicorn" in names and "celery" in names and "postgres" in names
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
