"""Celery tasks of the ranking app: thin wrappers that take ids and call services.

Training runs on the "gpu" queue, so that a worker on a machine with a GPU
(``celery -A imagesearch worker -Q gpu``) takes it; embedding chunks run on
"default", spread over every worker.
"""

from __future__ import annotations

import logging

from imagesearch.tasking import app_task

logger = logging.getLogger(__name__)

# a training's own failure handling closes its job and fails its version (services.training)
_TRAINING = dict(queue="gpu", acks_late=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300,
                 retry_database=False)


def _torch_threads(*, whole_machine: bool) -> None:
    """CPU threads for this task's torch work. Embedding chunks run side by side in every worker
    process, so each takes its share of the cores (two processes of two threads on two cores ran
    several times slower than one each); a training is one task and takes them all."""
    import os

    from celery import current_task

    if current_task is None or current_task.request.called_directly or current_task.request.is_eager:
        return  # run in this process (a command, a test): its threads are its own business
    import torch
    from django.conf import settings

    cpus = os.cpu_count() or 1
    torch.set_num_threads(cpus if whole_machine else max(1, cpus // max(1, settings.CELERY_WORKER_CONCURRENCY)))


@app_task("ranking.prepare_pretrained", acks_late=True, retry_database=False)
def prepare_pretrained(version_id: int) -> None:
    """A pretrained-features version: nothing to train, its weights are saved and it embeds the library."""
    _torch_threads(whole_machine=True)
    from ranking.services.training import version_train

    version_train(version_id=version_id)


@app_task("ranking.train_autoencoder", **_TRAINING)
def train_autoencoder(version_id: int) -> None:
    _torch_threads(whole_machine=True)
    from ranking.services.training import version_train

    version_train(version_id=version_id)


@app_task("ranking.train_ranking", **_TRAINING)
def train_ranking(version_id: int) -> None:
    _torch_threads(whole_machine=True)
    from ranking.services.training import version_train

    version_train(version_id=version_id)


@app_task("ranking.refresh_embeddings")
def refresh_embeddings(version_id: int) -> int:
    """Queue chunks for every image still lacking an embedding under the version; returns the job id."""
    from ranking.services.embeddings import embeddings_refresh_start

    return embeddings_refresh_start(version_id=version_id).pk


@app_task("ranking.embed_chunk", soft_time_limit=30 * 60, time_limit=35 * 60, chunk_of="ranking.EmbeddingChunk")
def embed_chunk(chunk_id: int) -> None:
    from ranking.services.embeddings import embedding_chunk_process

    _torch_threads(whole_machine=False)
    embedding_chunk_process(chunk_id=chunk_id)


@app_task("ranking.prepare_duplicate_scan")
def prepare_duplicate_scan(scan_id: int) -> None:
    """A scan's first step: its images listed into chunks, a find_duplicates_chunk task each."""
    from ranking.services.duplicates import duplicate_scan_prepare

    duplicate_scan_prepare(scan_id=scan_id)


@app_task("ranking.find_duplicates_chunk", chunk_of="ranking.DuplicateChunk")
def find_duplicates_chunk(chunk_id: int) -> None:
    from ranking.services.duplicates import duplicate_chunk_process

    duplicate_chunk_process(chunk_id=chunk_id)


@app_task("ranking.compute_map", acks_late=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300,
          retry_database=False)
def compute_map(map_id: int) -> None:
    """A version's clusters and map (k-means and t-SNE over all its embeddings): the whole machine's cores."""
    _torch_threads(whole_machine=True)
    from ranking.services.maps import map_compute

    map_compute(map_id=map_id)


@app_task("ranking.embed_new_images", soft_time_limit=30 * 60, time_limit=35 * 60)
def embed_new_images(image_ids: list[int]) -> int:
    from ranking.services.embeddings import embeddings_add_new_images

    _torch_threads(whole_machine=False)
    return embeddings_add_new_images(image_ids=image_ids)


@app_task("ranking.embed_missing_images")
def embed_missing_images() -> int:
    """The periodic sweep: queue embeddings for library images a version keeping embeddings lacks."""
    from ranking.services.embeddings import embeddings_sweep_missing

    return embeddings_sweep_missing()


@app_task("ranking.retire_version", soft_time_limit=None)
def retire_version(version_id: int, delete_weights: bool = False) -> None:
    """Drop a retired version's embeddings and index (millions of rows: not in a web request)."""
    from ranking.services.versions import version_embeddings_drop

    version_embeddings_drop(version_id=version_id, delete_weights=delete_weights)


@app_task("ranking.retrain_if_due", soft_time_limit=None)
def retrain_if_due(criterion_id: int) -> int | None:
    """The automatic loop's check (cheap when nothing is due); returns the new version's id."""
    from ranking.services.auto_retrain import training_start_if_due

    version = training_start_if_due(criterion_id=criterion_id)
    return version.pk if version else None


RETRAIN_CHECK_SECONDS = 60


def retrain_if_due_soon(*, criterion_id: int) -> None:
    """After new judgments: check the automatic loop a minute after this transaction commits, at most once
    a minute per criterion in this process (the check then sees every judgment of that minute)."""
    from django.core.cache import cache
    from django.db import transaction

    from ranking.models import SimilarityCriterion

    if not cache.add(f"ranking-retrain-check-{criterion_id}", 1, timeout=RETRAIN_CHECK_SECONDS):
        return
    if not SimilarityCriterion.objects.filter(pk=criterion_id, auto_retrain_after__gt=0).exists():
        return

    def send() -> None:
        try:
            # checked a minute from now, so that the judgments of the whole minute count
            retrain_if_due.apply_async((criterion_id,), countdown=RETRAIN_CHECK_SECONDS)
        except Exception:  # noqa: BLE001 - a broker outage must not fail the request that judged
            logger.exception("could not queue the retraining check of criterion %s", criterion_id)

    transaction.on_commit(send)
