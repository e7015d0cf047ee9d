"""Importing folders, archives and bad files through the import_images command and services."""

from __future__ import annotations

import json
import os
import time
import zipfile

import pytest
from django.core.management import call_command

from imagesearch import imaging, sources, storage
from imagesearch.models import Document, Image, IngestChunk, Job, JobIssue
from imagesearch.services import import_files, ingest
from imagesearch.services.ingest import ingest_chunk_process, ingest_job_create, ingest_job_run
from imagesearch.services.library import image_delete, media_sweep_orphans
from tests import images
from tests.factories import make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def library_folder(tmp_path):
    """Two labelled sub-folders of pictures plus one of every kind of bad file."""
    root = tmp_path / "incoming"
    for label, count in (("cats", 4), ("dogs", 3)):
        (root / label).mkdir(parents=True)
        for i in range(count):
            (root / label / f"{label}{i}.jpg").write_bytes(images.jpeg(seed=hash((label, i)) % 10_000))
    (root / "notes.txt").write_text("not a picture")
    (root / "empty.jpg").write_bytes(b"")
    good = images.png(seed=99)
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "renamed.jpg").write_bytes(images.png(seed=98))  # a PNG with the wrong name: accepted
    return root


def run_import(*args, capsys=None) -> str:
    call_command("import_images", *map(str, args), "--inline")
    return capsys.readouterr().out if capsys else ""


def test_import_folder_reports_bad_files_and_imports_the_rest(library_folder, capsys):
    out = run_import(library_folder, "--label-from-folder", "--collection", "Pets", capsys=capsys)
    assert Image.objects.count() == 8
    assert set(Image.objects.values_list("label", flat=True)) == {"cats", "dogs", "incoming"}
    assert Image.objects.get(original_name="renamed.jpg").format == "PNG"
    reasons = dict(JobIssue.objects.values_list("source", "message"))
    assert reasons == {
        str(library_folder / "notes.txt"): imaging.NOT_AN_IMAGE,
        str(library_folder / "empty.jpg"): imaging.EMPTY_FILE,
        str(library_folder / "truncated.png"): reasons[str(library_folder / "truncated.png")],
    }
    assert "truncated or corrupt" in reasons[str(library_folder / "truncated.png")]
    assert "Imported 8 images; 0 already in the library; 3 failed." in out
    assert f"skipped {library_folder / 'empty.jpg'}: empty file" in out
    job = Job.objects.get()
    assert (job.status, job.progress_done, job.progress_total) == ("succeeded", 11, 11)
    for image in Image.objects.all():
        assert storage.media_path(image.file.name).read_bytes()[:4] in (b"\xff\xd8\xff\xe0", b"\x89PNG")
        assert storage.media_path(image.thumbnail.name).exists()


def test_second_run_imports_nothing(library_folder, capsys):
    run_import(library_folder)
    files_before = sorted(p for p in storage.media_path("").rglob("*") if p.is_file())
    out = run_import(library_folder, capsys=capsys)
    assert Image.objects.count() == 8
    assert "Imported 0 images; 8 already in the library; 3 failed." in out
    assert sorted(p for p in storage.media_path("").rglob("*") if p.is_file()) == files_before


def test_zip_archives_are_imported_with_folder_labels(tmp_path):
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("shoes/a.jpg", images.jpeg(seed=1))
        zf.writestr("bags/b.png", images.png(seed=2))
        zf.writestr("readme.txt", "hello")
    job = ingest_job_create(paths=[archive], label_from_folder=True)
    ingest_job_run(job_id=job.pk, inline=True)
    assert sorted(Image.objects.values_list("label", "source_path")) == [
        ("bags", f"{archive}!/bags/b.png"), ("shoes", f"{archive}!/shoes/a.jpg"),
    ]
    assert JobIssue.objects.get().source == f"{archive}!/readme.txt"


def test_missing_paths_and_broken_archives_are_reported(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    job = ingest_job_create(paths=[tmp_path / "nope", broken])
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.result["failed"] == 2
    messages = dict(job.issues.values_list("source", "message"))
    assert messages[str(tmp_path / "nope")] == sources.NOT_FOUND
    assert messages[str(broken)].startswith("unreadable zip archive")


def test_oversized_files_are_refused_without_being_read(tmp_path, settings):
    settings.IMAGE_MAX_BYTES = 1000
    (tmp_path / "big.jpg").write_bytes(images.jpeg(seed=5, width=800, height=600))
    job = ingest_job_create(paths=[tmp_path])
    ingest_job_run(job_id=job.pk, inline=True)
    assert Image.objects.count() == 0
    assert "file too large" in JobIssue.objects.get().message


def test_multipage_tiff_becomes_a_document_with_one_image_per_page(tmp_path):
    (tmp_path / "scan.tif").write_bytes(images.multipage_tiff(pages=3))
    job = ingest_job_create(paths=[tmp_path])
    ingest_job_run(job_id=job.pk, inline=True)
    document = Document.objects.get()
    assert (document.title, document.page_count, document.media_type) == ("scan", 3, "image/tiff")
    assert list(document.images.order_by("page_number").values_list("page_number", flat=True)) == [1, 2, 3]
    assert storage.media_path(document.file.name).exists()


def test_a_chunk_run_twice_counts_nothing_twice(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(images.jpeg(seed=200 + i))
    job = ingest_job_create(paths=[tmp_path], chunk_size=2)
    chunks = list(IngestChunk.objects.filter(job=job).order_by("index"))
    assert len(chunks) == 3
    ingest_chunk_process(chunk_id=chunks[0].pk)
    ingest_chunk_process(chunk_id=chunks[0].pk)  # a redelivered message
    job.refresh_from_db()
    assert (job.status, job.progress_done) == ("running", 2)
    ingest_chunk_process(chunk_id=chunks[1].pk)
    ingest_chunk_process(chunk_id=chunks[2].pk)
    ingest_chunk_process(chunk_id=chunks[1].pk)
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert Image.objects.count() == 5
    assert job.result["imported"] == 5 and job.result["duplicates"] == 0


def test_interrupted_chunk_leaves_no_rows_and_no_files(tmp_path, monkeypatch):
    for i in range(4):
        (tmp_path / f"{i}.jpg").write_bytes(images.jpeg(seed=300 + i))
    job = ingest_job_create(paths=[tmp_path])
    real_read = import_files.read_source
    calls = []

    def read_then_interrupt(item, **kwargs):
        calls.append(item)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third file is read
        return real_read(item, **kwargs)

    monkeypatch.setattr(import_files, "read_source", read_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ingest_job_run(job_id=job.pk, inline=True)
    assert Image.objects.count() == 0
    assert not [p for p in storage.media_path("").rglob("*") if p.is_file()]
    monkeypatch.setattr(import_files, "read_source", real_read)
    ingest_job_run(job_id=job.pk, inline=True)  # running it again finishes the job
    assert Image.objects.count() == 4


def test_sweep_removes_old_orphan_files_only(tmp_path):
    image = make_image()
    orphan = "originals/aa/bb/" + "a" * 64 + ".jpg"
    fresh_orphan = "originals/cc/dd/" + "c" * 64 + ".jpg"
    for name in (orphan, fresh_orphan):
        storage.store_bytes(name, b"x")
    old = time.time() - 7200
    for name in (orphan, image.file.name, image.thumbnail.name):
        os.utime(storage.media_path(name), (old, old))
    assert media_sweep_orphans(min_age_seconds=3600) == 1
    assert not storage.media_path(orphan).exists()
    assert storage.media_path(fresh_orphan).exists()
    assert storage.media_path(image.file.name).exists() and storage.media_path(image.thumbnail.name).exists()


def test_deleting_an_image_removes_its_files(django_capture_on_commit_callbacks):
    image = make_image()
    paths = [storage.media_path(image.file.name), storage.media_path(image.thumbnail.name)]
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)
    assert not Image.objects.exists()
    assert not any(p.exists() for p in paths)


def test_upload_of_known_bytes_is_a_duplicate():
    image = make_image()
    data = storage.media_path(image.file.name).read_bytes()
    outcome = ingest.image_ingest_bytes(data=data, original_name="again.jpg", collection=image.collection)
    assert outcome.status == import_files.DUPLICATE


def test_a_source_item_whose_name_is_not_text_travels_in_json_and_back_unchanged():
    """A non-UTF-8 file name (surrogates in Python) cannot go into PostgreSQL's JSON as it is."""
    item = sources.SourceItem(os.fsdecode(b"/data/caf\xe9.png"), None, "caf\xe9", 10)
    stored = json.dumps(item.to_json(), ensure_ascii=False).encode("utf-8")  # what the JSON column takes
    assert sources.SourceItem.from_json(json.loads(stored)) == item
    assert item.display == "/data/caf\\xe9.png" and item.name == "caf\\xe9.png"


def test_a_bug_in_an_import_chunk_fails_its_job_and_is_raised_for_celery(tmp_path, monkeypatch):
    """Bad files are issues; an exception out of the chunk is a bug: the task (imagesearch.tasking.app_task)
    closes the chunk's job as failed with the error, so it never shows "running" forever."""
    from imagesearch.tasks import ingest_chunk

    (tmp_path / "a.png").write_bytes(images.png(seed=1))
    job = ingest_job_create(paths=[tmp_path])
    chunk = IngestChunk.objects.get(job=job)

    def buggy(*, chunk_id):
        raise RuntimeError("a bug in the importer")

    monkeypatch.setattr(ingest, "ingest_chunk_process", buggy)
    with pytest.raises(RuntimeError, match="a bug in the importer"):
        ingest_chunk(chunk.pk)  # what the worker runs
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.error == "RuntimeError: a bug in the importer"
