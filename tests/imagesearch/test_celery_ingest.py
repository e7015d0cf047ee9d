"""End to end: import_images hands the work to a real Celery worker over a real broker."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from imagesearch import storage
from imagesearch.models import Image, IngestChunk, Job
from tests import images

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_import_runs_on_the_worker(celery_worker_process, tmp_path, settings, capsys):
    worker_media, worker_log = celery_worker_process
    settings.MEDIA_ROOT = worker_media
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i}.jpg").write_bytes(images.jpeg(seed=5000 + i))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")

    call_command("import_images", str(folder), "--chunk-size", "4", "--collection", "Worker")
    captured = capsys.readouterr()

    assert "No Celery worker answered" not in captured.err
    assert "Imported 12 images; 0 already in the library; 1 failed." in captured.out
    job = Job.objects.get()
    assert job.status == Job.Status.SUCCEEDED and job.progress_done == 13 and job.rate > 0
    assert IngestChunk.objects.filter(job=job, status="done").count() == 4
    assert Image.objects.filter(collection__name="Worker").count() == 12
    assert all(storage.media_path(i.thumbnail.name).exists() for i in Image.objects.all())
    assert worker_log.read_text().count("Task imagesearch.ingest_chunk") >= 4

    call_command("import_images", str(folder), "--chunk-size", "4", "--collection", "Worker")
    assert "Imported 0 images; 12 already in the library; 1 failed." in capsys.readouterr().out
