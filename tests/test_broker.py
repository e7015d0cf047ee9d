"""The broker and the shared cache: the embedded Redis, handing a lost worker's tasks back, retries
that outlast a database restart, the periodic sweeps, and a dashboard left polling the workers."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from kombu import Queue

from imagesearch import embedded_redis
from imagesearch.celery import DATABASE_RETRY, app
from imagesearch.models import Image, Job
from imagesearch.workers import broker_requeue_unacknowledged
from tests import images
from tests.factories import UserFactory


def test_the_embedded_redis_starts_answers_and_stops(tmp_path):
    server = embedded_redis.EmbeddedRedis(tmp_path / "data")
    assert not server.running()
    assert server.ensure() is True and server.owned and server.running()
    # a second process finds it on the socket and does not start another
    assert embedded_redis.EmbeddedRedis(tmp_path / "data").ensure() is False
    import redis

    client = redis.Redis.from_url(embedded_redis.cache_url(tmp_path / "data"))
    client.set("kept", "1")
    server.stop()
    assert not server.running()
    # its append-only file brings back what was written (queued tasks survive a restart)
    assert server.ensure() is True
    assert redis.Redis.from_url(embedded_redis.cache_url(tmp_path / "data")).get("kept") == b"1"
    server.stop()


def test_a_data_directory_too_deep_for_a_unix_socket_gets_one_in_the_temp_folder(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = embedded_redis.socket_path(deep)
    assert len(str(path)) <= 100 and path == embedded_redis.socket_path(deep)  # stable, so every process finds it
    server = embedded_redis.EmbeddedRedis(deep)
    try:
        assert server.ensure() and server.running()
    finally:
        server.stop()


def test_the_suite_runs_on_the_configured_broker_and_shares_its_cache_across_processes():
    if settings.EMBEDDED_REDIS:
        assert settings.CELERY_BROKER_URL.startswith("redis+socket://")
        assert embedded_redis.ping(embedded_redis.socket_path(settings.EMBEDDED_REDIS_DIR))
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    cache.set("shared-mark", 42)
    import redis

    # another process (a new client here) sees the same value: no per-process memory
    assert any(key.endswith(b"shared-mark") for key in redis.Redis.from_url(
        settings.CACHES["default"]["LOCATION"]).keys("*shared-mark"))


def test_tasks_held_by_a_worker_that_died_are_handed_back_to_their_queue():
    queue = Queue("requeue-test", routing_key="requeue-test")
    with app.connection_for_write() as connection:
        channel = connection.channel()
        bound = queue(channel)
        bound.declare()
        bound.purge()
        connection.Producer(channel).publish({"n": 1}, routing_key="requeue-test", serializer="json")
        message = bound.get(no_ack=False)
        assert message is not None and message.payload == {"n": 1}
        channel.qos._delivered.clear()  # die without acknowledging or giving it back, like a SIGKILL
        assert bound.get(no_ack=False) is None  # taken: nobody else gets it

        assert broker_requeue_unacknowledged() >= 1

        again = bound.get(no_ack=True)
        assert again is not None and again.payload == {"n": 1}
        bound.delete()


def test_serve_names_each_worker_it_starts_anew():
    from imagesearch.management.commands.serve import Command

    names = {next(arg for arg in Command._worker_command({"concurrency": 1}) if arg.startswith("local-"))
             for _ in range(5)}
    assert len(names) == 5


def test_database_retries_back_off_for_longer_than_a_restart_takes():
    waits = [min(DATABASE_RETRY["retry_backoff_max"], DATABASE_RETRY["retry_backoff"] * 2 ** n)
             for n in range(DATABASE_RETRY["max_retries"])]
    assert not DATABASE_RETRY["retry_jitter"]
    assert sum(waits) >= 300  # minutes, not the 25 s in which 26 chunks used to spend their 5 retries
    from imagesearch.tasks import ingest_chunk
    from labeling.tasks import refill_triplets
    from ranking.tasks import embed_chunk

    for task in (ingest_chunk, embed_chunk, refill_triplets):
        assert task.max_retries == DATABASE_RETRY["max_retries"]
        assert task.acks_late  # the app's task_acks_late: a killed worker's chunk is delivered again


def test_the_periodic_checks_are_scheduled():
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"imagesearch.fail_orphaned_jobs", "ranking.embed_missing_images", "imagesearch.sweep_media"} <= tasks
    assert tasks <= set(app.tasks.keys())


@pytest.mark.django_db
def test_the_sweep_embeds_library_images_that_the_active_version_lacks(autoencoder, settings, monkeypatch):
    """768 images committed before a database crash never got embeddings: the sweep finds them."""
    from ranking.models import Embedding
    from ranking.services import embeddings
    from ranking.tasks import embed_new_images

    lost = Image.objects.order_by("pk")[:3]
    lost_ids = [image.pk for image in lost]
    Embedding.objects.filter(image_id__in=lost_ids).delete()
    Image.objects.filter(pk__in=lost_ids[:2]).update(created_at=timezone.now() - timedelta(hours=1))
    queued = []
    monkeypatch.setattr(embed_new_images, "delay", lambda ids: queued.append(ids))

    assert embeddings.embeddings_sweep_missing() == 2  # the third is younger: its import's own task is on the way
    assert sorted(queued[0]) == lost_ids[:2]
    embed_new_images(queued[0])  # what the worker does with it
    assert Embedding.objects.filter(version=autoencoder, image_id__in=lost_ids[:2]).count() == 2
    assert embeddings.embeddings_sweep_missing() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_dashboard_polling_the_workers_does_not_stop_an_import(celery_worker_process, tmp_path, settings):
    """The dashboard asks for the workers every few seconds (broadcast messages); on the filesystem broker
    this crashed the worker within a minute. Here it polls without pause for 30 s while an import runs."""
    from django.test import Client

    worker_media, worker_log = celery_worker_process
    settings.MEDIA_ROOT = worker_media
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    answers, stop = [], threading.Event()

    def poll() -> None:
        from django.db import connection

        poller = Client()
        poller.force_login(admin)
        try:
            while not stop.is_set():  # each answer waits a second for its broadcast
                answers.append(poller.get("/api/workers/").status_code)
        finally:
            connection.close()

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i}.png").write_bytes(images.png(seed=9000 + i, width=64, height=48))
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        time.sleep(15)
        call_command("import_images", str(folder), "--chunk-size", "2", "--collection", "Polled")
        time.sleep(15)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert Job.objects.get().status == Job.Status.SUCCEEDED
    assert Image.objects.filter(collection__name="Polled").count() == 40
    assert len(answers) >= 8 and set(answers) == {200}
    assert "Unrecoverable error" not in worker_log.read_text()
    assert app.control.ping(timeout=2.0)  # the worker is still there
    # one broadcast tells each worker's queues, GPU and running tasks
    from imagesearch.workers import workers_status

    workers = workers_status(timeout=1.0)
    worker = next(w for w in workers if w["hostname"].startswith(f"test-{os.getpid()}@"))
    assert worker["queues"] == ["default", "gpu"] and worker["gpu"] == "" and worker["active_tasks"] == 0
