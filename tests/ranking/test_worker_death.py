"""A worker killed in the middle of a training job: the job is reported failed, never left running."""

from __future__ import annotations

import time

import pytest

from imagesearch.models import Job
from ranking.models import ModelVersion
from ranking.services.training import training_start
from tests.conftest import TINY_AUTOENCODER, wait_for, worker_to_kill
from tests.factories import UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_job_whose_worker_is_killed_is_reported_failed(client, settings, stripes_library, criterion, tmp_path):
    from ranking.tasks import train_autoencoder

    log_path = tmp_path / "worker.log"
    with worker_to_kill(settings, log_path, "killtest") as (queue, hostname):
        # long enough to be killed in the middle: many quick epochs
        version = training_start(criterion=criterion, kind="autoencoder", dispatch=False,
                                 hyperparameters={**TINY_AUTOENCODER, "epochs": 500})
        train_autoencoder.apply_async((version.pk,), queue=queue)
        job = wait_for(lambda: Job.objects.filter(pk=version.training_job_id, status="running",
                                                   progress_done__gte=1).first(), what="training to start")
        assert job.worker == hostname
    # killed on leaving the block, as when its machine dies

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
