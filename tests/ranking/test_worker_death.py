"""A worker killed in the middle of a training job: the job is reported failed, never left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from imagesearch.models import Job
from ranking.models import ModelVersion
from ranking.services.training import training_start
from tests.conftest import TINY_AUTOENCODER, _url_with_database, wait_for
from tests.factories import UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_job_whose_worker_is_killed_is_reported_failed(client, settings, stripes_library, criterion, tmp_path):
    from django.db import connection

    from imagesearch.celery import app
    from ranking.tasks import train_autoencoder

    queue = f"killtest-{os.getpid()}"
    hostname = f"{queue}@test"
    log_path = tmp_path / "worker.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": _url_with_database(settings.DATABASE_URL, connection.settings_dict["NAME"]),
           "IMAGESEARCH_MEDIA_DIR": str(settings.MEDIA_ROOT), "RANKING_MODELS_DIR": str(settings.RANKING_MODELS_DIR)}
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--loglevel", "INFO", "--concurrency", "1",
             "--queues", queue, "--hostname", hostname],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: app.control.ping(destination=[hostname], timeout=0.5), what="the worker to start")
        # long enough to be killed in the middle: many quick epochs
        version = training_start(criterion=criterion, kind="autoencoder", dispatch=False,
                                 hyperparameters={**TINY_AUTOENCODER, "epochs": 500})
        train_autoencoder.apply_async((version.pk,), queue=queue)
        job = wait_for(lambda: Job.objects.filter(pk=version.training_job_id, status="running",
                                                   progress_done__gte=1).first(), what="training to start")
        assert job.worker == hostname
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the whole worker, as when its machine dies
        worker.wait()

    settings.JOBS_ORPHAN_GRACE_SECONDS = 1
    time.sleep(1.5)
    assert Job.objects.get(pk=job.pk).status == "running"  # nobody has looked yet
    client.force_login(UserFactory(roles=["admin"]))
    for _ in range(2):  # the dashboard's polls: the worker must be missing for the grace period
        online = [w["hostname"] for w in client.get("/api/workers/").json()]
        assert hostname not in online
        time.sleep(1.5)
    job.refresh_from_db()
    assert job.status == "failed" and hostname in job.error, (job.status, log_path.read_text()[-2000:])
    assert ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.FAILED
