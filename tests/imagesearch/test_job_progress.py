"""A job's progress moves while its parts run, not only when each commits, and counts each item once."""

from __future__ import annotations

import pytest
from django.db import connection

from imagesearch.models import IngestChunk, Job
from imagesearch.services.ingest import ingest_job_create, ingest_job_run
from imagesearch.services.jobs import (
    PARTS_UNDER_WAY, job_advance, job_create, job_finish, job_part_reporter, job_report_part,
)
from tests import images
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def progress_seen():
    """Every value the jobs' ``progress_done`` takes, in order, as written to the database (a trigger
    notes them, so the test sees what a page polling at that moment would have seen)."""
    table = Job._meta.db_table
    with connection.cursor() as cursor:
        # created inside the test's transaction: rolled back with it
        cursor.execute("CREATE TEMP TABLE progress_seen (id serial, done bigint)")
        cursor.execute("CREATE FUNCTION note_progress() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN INSERT INTO progress_seen (done) VALUES (NEW.progress_done); RETURN NEW; END $$")
        cursor.execute(f"CREATE TRIGGER note_progress AFTER UPDATE OF progress_done ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION note_progress()")

    def seen() -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT done FROM progress_seen ORDER BY id")
            return [row[0] for row in cursor.fetchall()]

    return seen


def test_a_54_photo_import_in_one_chunk_shows_progress_before_it_ends(tmp_path, settings, progress_seen):
    settings.INGEST_CHUNK_SIZE = 64  # the default: the whole import is one chunk, one commit
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(54):
        (folder / f"{i}.jpg").write_bytes(images.jpeg(seed=7000 + i, width=96, height=72))
    job = ingest_job_create(paths=[folder])
    assert IngestChunk.objects.filter(job=job).count() == 1

    ingest_job_run(job_id=job.pk, inline=True)

    seen = progress_seen()
    assert any(0 < done < 54 for done in seen), seen  # the bar left 0 % before the chunk committed
    assert seen[-1] == 54 and seen == sorted(seen)
    job.refresh_from_db()
    assert (job.status, job.progress_done, job.progress_total) == ("succeeded", 54, 54)
    assert PARTS_UNDER_WAY not in job.result


def _job_with_chunks(count: int = 2, size: int = 10) -> tuple[Job, list[IngestChunk]]:
    job = job_create(kind="import_images", total=count * size)
    chunks = [IngestChunk.objects.create(job=job, index=i, items=[{}] * size) for i in range(count)]
    return job, chunks


def _pending(chunk: IngestChunk):
    return IngestChunk.objects.filter(pk=chunk.pk, status=IngestChunk.Status.PENDING)


def _done(job: Job) -> int:
    return Job.objects.values_list("progress_done", flat=True).get(pk=job.pk)


def test_a_part_under_way_shows_its_count_and_its_commit_counts_it_once(client):
    job, (first, second) = _job_with_chunks()
    assert job_report_part(job_id=job.pk, part="chunk 0", done=3, pending=_pending(first))
    assert job_report_part(job_id=job.pk, part="chunk 0", done=5, pending=_pending(first))
    assert _done(job) == 5  # replaced, not added
    job_report_part(job_id=job.pk, part="chunk 1", done=4, pending=_pending(second))
    assert _done(job) == 9

    client.force_login(UserFactory(roles=["admin"]))
    [row] = [j for j in client.get("/api/jobs/").json() if j["id"] == job.pk]
    assert (row["progress_done"], row["percent"]) == (9, 45.0)

    # the first chunk's worker died; the chunk is delivered again and starts from its first file
    job_report_part(job_id=job.pk, part="chunk 0", done=1, pending=_pending(first))
    assert _done(job) == 5
    IngestChunk.objects.filter(pk=first.pk).update(status=IngestChunk.Status.DONE)
    job_advance(job_id=job.pk, done=10, part="chunk 0")  # its commit: 10 items, what it showed taken back
    assert _done(job) == 14
    assert Job.objects.get(pk=job.pk).result[PARTS_UNDER_WAY] == {"chunk 1": 4}
    job_advance(job_id=job.pk, done=10, part="chunk 1")
    job = Job.objects.get(pk=job.pk)
    assert job.progress_done == 20 and PARTS_UNDER_WAY not in job.result and job.rate == 0  # not started


def test_a_late_report_counts_nothing_and_an_ended_job_drops_its_parts_under_way():
    job, (first, second) = _job_with_chunks()
    IngestChunk.objects.filter(pk=first.pk).update(status=IngestChunk.Status.DONE)
    job_advance(job_id=job.pk, done=10, part="chunk 0")
    # a second run of the same chunk (redelivered while the first still ran) is still reading files
    assert not job_report_part(job_id=job.pk, part="chunk 0", done=6, pending=_pending(first))
    assert _done(job) == 10
    assert job_report_part(job_id=job.pk, part="chunk 1", done=4, pending=_pending(second))
    assert _done(job) == 14
    job_finish(job_id=job.pk, status=Job.Status.CANCELLED)  # the second chunk will not commit: its 4 go
    job = Job.objects.get(pk=job.pk)
    assert job.progress_done == 10 and PARTS_UNDER_WAY not in job.result
    assert not job_report_part(job_id=job.pk, part="chunk 1", done=6, pending=_pending(second))
    assert _done(job) == 10


def test_the_reporter_reports_the_first_item_then_at_most_every_interval_and_never_the_last():
    job, (chunk, _) = _job_with_chunks(size=5)
    seldom = job_part_reporter(job_id=job.pk, part="chunk 0", size=5, pending=_pending(chunk), every_seconds=3600)
    for done in range(1, 6):
        seldom(done)
    assert Job.objects.get(pk=job.pk).result[PARTS_UNDER_WAY] == {"chunk 0": 1}

    often = job_part_reporter(job_id=job.pk, part="chunk 0", size=5, pending=_pending(chunk), every_seconds=0)
    counts = []
    for done in range(1, 6):
        often(done)
        counts.append(_done(job))
    assert counts == [1, 2, 3, 4, 4]  # the fifth is counted by the chunk's commit


@pytest.mark.django_db
def test_the_eta_counts_down_between_progress_updates_instead_of_growing():
    """A training epoch is one long item: the ETA climbed a minute per poll during it, then fell back."""
    from datetime import timedelta

    from django.utils import timezone

    from imagesearch.api.serializers import JobOutputSerializer
    from imagesearch.models import Job

    now = timezone.now()
    job = Job.objects.create(kind="train_ranking", status=Job.Status.RUNNING, progress_total=10, progress_done=5,
                             started_at=now - timedelta(seconds=100), progress_at=now - timedelta(seconds=20))
    # 80 s for 5 items → 16 s each, 5 left → 80 s, of which 20 have passed since the last update
    first = JobOutputSerializer(job).data["eta_seconds"]
    assert 59 <= first <= 60
    # 30 s later with no progress (both times 30 s further back): 80 − 50
    Job.objects.filter(pk=job.pk).update(started_at=now - timedelta(seconds=130), progress_at=now - timedelta(seconds=50))
    later = JobOutputSerializer(Job.objects.get(pk=job.pk)).data["eta_seconds"]
    assert 29 <= later <= 30  # a countdown (elapsed × left / done would have grown from 100 s to 130 s)
    Job.objects.filter(pk=job.pk).update(started_at=now - timedelta(seconds=200), progress_at=now - timedelta(seconds=120))
    assert JobOutputSerializer(Job.objects.get(pk=job.pk)).data["eta_seconds"] == 1.0  # overdue: any moment now


@pytest.mark.django_db
def test_a_later_phase_of_a_training_times_its_own_items():
    """The feature pass took most of a training's first minutes; the epochs after it were timed by it."""
    from datetime import timedelta

    from django.utils import timezone

    from imagesearch.api.serializers import JobOutputSerializer
    from imagesearch.models import Job

    now = timezone.now()
    job = Job.objects.create(kind="train_ranking", status=Job.Status.RUNNING, progress_total=30, progress_done=10,
                             started_at=now - timedelta(seconds=600), progress_at=now,
                             params={"phase_started_at": (now - timedelta(seconds=20)).isoformat()})
    # 10 epochs in the 20 s since the epochs began → 2 s each, 20 left: 40 s (not 20 × 60 s)
    assert 39 <= JobOutputSerializer(job).data["eta_seconds"] <= 41
