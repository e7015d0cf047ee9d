from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test stores its files in a fresh folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RANKING_MODELS_DIR = tmp_path / "models"
    return settings.MEDIA_ROOT


def _url_with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, tmp_path_factory):
    """A real Celery worker process on the configured broker, using the test database.

    Yields (media_root, log_path). Tests that use it need ``transactional_db`` so the
    worker sees their committed rows.
    """
    import os
    import subprocess
    import sys
    import time

    from django.conf import settings
    from django.db import connection

    from imagesearch.celery import app

    app.control.purge()  # messages left by an earlier, interrupted run
    base = tmp_path_factory.mktemp("worker")
    log_path = base / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _url_with_database(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        "IMAGESEARCH_MEDIA_DIR": str(base / "media"),
        "RANKING_MODELS_DIR": str(base / "models"),
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--queues", "default,gpu", "--hostname", f"test-{os.getpid()}@%h"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start:\n{log_path.read_text()}")
        yield base / "media", log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
