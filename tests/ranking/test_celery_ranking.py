"""End to end on a real Celery worker: training on the "gpu" queue, embedding chunks, new images."""

from __future__ import annotations

import pytest

from imagesearch.models import Job
from imagesearch.services.ingest import image_ingest_bytes
from ranking.models import Embedding, EmbeddingChunk, ModelVersion
from ranking.services.criteria import criterion_default
from ranking.services.training import training_start
from tests import images
from tests.conftest import TINY_AUTOENCODER, wait_for
from tests.factories import CollectionFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_training_and_embedding_run_on_the_workers(celery_worker_process, settings):
    worker_media, worker_log = celery_worker_process
    settings.MEDIA_ROOT = worker_media
    collection = CollectionFactory(name="Worker ranking")
    for i in range(20):
        image_ingest_bytes(data=images.stripes(i % 2 == 0, seed=300 + i), original_name=f"{i}.png",
                           collection=collection, label="v" if i % 2 == 0 else "h")

    version = training_start(criterion=criterion_default(), kind="autoencoder", hyperparameters=TINY_AUTOENCODER)
    version = wait_for(
        lambda: ModelVersion.objects.filter(pk=version.pk, status__in=["active", "failed"]).first(),
        what="the autoencoder to be trained, embedded and activated",
    )
    assert version.status == ModelVersion.Status.ACTIVE, version.error
    job = Job.objects.get(pk=version.embedding_job_id)
    assert job.status == Job.Status.SUCCEEDED and job.progress_done == 20
    assert EmbeddingChunk.objects.filter(job=job, status="done").count() == 3  # 8 + 8 + 4
    log = worker_log.read_text()
    assert "Task ranking.train_autoencoder" in log and log.count("Task ranking.embed_chunk") >= 3

    # An image imported now is embedded by the worker with the active version, unasked.
    outcome = image_ingest_bytes(data=images.stripes(True, seed=999), original_name="late.png", collection=collection)
    wait_for(lambda: Embedding.objects.filter(version=version, image_id=outcome.image_ids[0]).exists(),
              what="the new image's embedding")
