"""Imports fed hostile files (tests/hostile.py): each bad file gets its own clear error, or a name
that fits, and everything else is imported; nothing blocks, nothing is read from outside the folder."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image as PILImage

from imagesearch import sources, storage
from imagesearch.models import Document, Image, IngestChunk, Job, JobIssue
from imagesearch.services import import_files, ingest
from imagesearch.services.ingest import ingest_chunk_process, ingest_job_create, ingest_job_run
from imagesearch.services.jobs import job_fail
from tests import hostile, images
from tests.factories import UserFactory
from tests.imagesearch.test_document_ingest import report_pdf

pytestmark = pytest.mark.django_db


def import_inline(*paths, **options) -> Job:
    job = ingest_job_create(paths=paths, **options)
    ingest_job_run(job_id=job.pk, inline=True)
    job.refresh_from_db()
    return job


def issues(job: Job) -> dict[str, str]:
    return dict(job.issues.values_list("source", "message"))


# --- names (issue 14, part 3, item 3) ------------------------------------------------------------


def test_a_zip_member_name_too_long_for_the_library_is_shortened_and_every_picture_imported(tmp_path):
    archive = tmp_path / "batch.zip"
    long_name = hostile.long_name_zip(archive, good=20, name_length=600)
    job = import_inline(archive)
    assert job.status == Job.Status.SUCCEEDED and job.result["imported"] == 21
    image = Image.objects.get(source_path=f"{archive}!/{long_name}")
    assert len(image.original_name) == 500 and image.original_name.startswith("xxx")
    assert image.original_name.endswith("….png")
    (source, message), = issues(job).items()
    assert source == f"{archive}!/{long_name} (name)" and message == import_files.NAME_SHORTENED.format(
        what="name", limit=500, length=len(os.path.basename(long_name)))


def test_a_folder_name_too_long_for_a_label_gives_a_shortened_label_to_each_of_its_pictures(tmp_path):
    folder = tmp_path / ("f" * 230)
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes(images.jpeg(seed=40 + i))
    job = import_inline(tmp_path, label_from_folder=True)
    assert job.result["imported"] == 6 and job.result["failed"] == 0
    assert set(Image.objects.values_list("label", flat=True)) == {"f" * 199 + "…"}
    assert set(issues(job).values()) == {import_files.NAME_SHORTENED.format(what="label", limit=200, length=230)}


@pytest.mark.parametrize("command", ["import_images", "import_documents"])
def test_a_file_name_that_is_not_utf8_is_imported_under_a_name_that_shows_its_bytes(tmp_path, command, capsys):
    hostile.non_utf8_name(tmp_path, images.png(seed=50))
    hostile.non_utf8_name(tmp_path, report_pdf(1, seed=51), name=b"rapport \xe9t\xe9.pdf")
    (tmp_path / "plain.jpg").write_bytes(images.jpeg(seed=52))
    call_command(command, str(tmp_path), "--inline")
    names = set(Image.objects.values_list("original_name", flat=True))
    assert {"\\xff\\xfe.png", "plain.jpg", "rapport \\xe9t\\xe9.pdf"} <= names
    document = Document.objects.get()
    assert document.title == "rapport \\xe9t\\xe9" and document.source_path == f"{tmp_path}/rapport \\xe9t\\xe9.pdf"
    assert Image.objects.get(original_name="\\xff\\xfe.png").source_path == f"{tmp_path}/\\xff\\xfe.png"
    assert "0 failed" in capsys.readouterr().out


def test_a_path_given_on_the_command_line_that_is_not_utf8_is_recorded_as_text(tmp_path):
    path = hostile.non_utf8_name(tmp_path, images.png(seed=53))
    job = import_inline(path, tmp_path / os.fsdecode(b"missing-\xff"))
    assert job.params["paths"] == [f"{tmp_path}/\\xff\\xfe.png", f"{tmp_path}/missing-\\xff"]
    assert job.result["imported"] == 1
    assert issues(job) == {f"{tmp_path}/missing-\\xff": sources.NOT_FOUND}


def test_a_zip_whose_utf8_flagged_names_are_not_utf8_is_reported_and_the_rest_imported(tmp_path):
    hostile.invalid_utf8_zip(tmp_path / "bad.zip")
    (tmp_path / "fine.jpg").write_bytes(images.jpeg(seed=54))
    job = import_inline(tmp_path)
    assert job.result["imported"] == 1
    assert issues(job)[str(tmp_path / "bad.zip")].startswith("unreadable zip archive")


def test_no_row_of_a_chunk_is_committed_once_its_job_has_failed(tmp_path, monkeypatch):
    """Another chunk's task failed the job while this one (a large scan, its own chunk) was reading."""
    with zipfile.ZipFile(tmp_path / "batch.zip", "w") as archive:
        archive.writestr("scan.tif", images.multipage_tiff(pages=3, seed=55))
        archive.writestr("photo.jpg", images.jpeg(seed=56))
    job = ingest_job_create(paths=[tmp_path / "batch.zip"])
    real_read = import_files.read_source

    def read_while_the_job_fails(item, **kwargs):
        job_fail(job_id=job.pk, exc=RuntimeError("a bug in another chunk"))
        return real_read(item, **kwargs)

    monkeypatch.setattr(import_files, "read_source", read_while_the_job_fails)
    for chunk in IngestChunk.objects.filter(job=job).order_by("index"):
        ingest_chunk_process(chunk_id=chunk.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert not Image.objects.exists() and not Document.objects.exists()
    assert not [p for p in storage.media_path("").rglob("*") if p.is_file()]


# --- files that are not regular files, links (items 4, 5) ------------------------------------------


@pytest.mark.timeout(60)
def test_fifos_and_other_non_regular_files_are_reported_and_never_opened(tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(images.jpeg(seed=60))
    hostile.fifo(tmp_path / "pipe.jpg")
    hostile.fifo(tmp_path / "pipe.zip")
    call_command("import_images", str(tmp_path), str(tmp_path / "pipe.jpg"), "--inline")
    job = Job.objects.get()
    assert job.result["imported"] == 1
    not_regular = sources.NOT_REGULAR.format(kind="a FIFO (named pipe)")
    assert issues(job) == {str(tmp_path / "pipe.jpg"): not_regular, str(tmp_path / "pipe.zip"): not_regular}
    assert f"skipped {tmp_path / 'pipe.zip'}: not a regular file" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_a_fifo_swapped_in_after_the_listing_is_refused_without_waiting(tmp_path):
    (tmp_path / "a.jpg").write_bytes(images.jpeg(seed=61))
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        archive.writestr("inside.jpg", images.jpeg(seed=62))
    job = ingest_job_create(paths=[tmp_path])
    for name in ("a.jpg", "b.zip"):
        (tmp_path / name).unlink()
        hostile.fifo(tmp_path / name)
    ingest_job_run(job_id=job.pk, inline=True)
    job.refresh_from_db()
    not_regular = sources.NOT_REGULAR.format(kind="a FIFO (named pipe)")
    assert issues(job) == {str(tmp_path / "a.jpg"): not_regular, f"{tmp_path / 'b.zip'}!/inside.jpg": not_regular}


def test_links_out_of_the_imported_folder_are_not_followed_and_links_within_it_are(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(images.jpeg(seed=62))
    root = tmp_path / "incoming"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "real.jpg").write_bytes(images.jpeg(seed=63))
    hostile.symlink_out(root / "passwd.jpg", "/etc/passwd")
    hostile.symlink_out(root / "secret.jpg", outside / "secret.jpg")
    hostile.symlink_out(root / "relative.jpg", "../elsewhere/secret.jpg")
    hostile.symlink_out(root / "elsewhere", outside)  # a folder
    hostile.symlink_out(root / "inside.jpg", "sub/real.jpg")
    hostile.symlink_out(root / "broken.jpg", root / "nothing.jpg")
    job = import_inline(root)
    # inside.jpg is followed (listed first, it is imported under its own name) and real.jpg is the same picture
    assert list(Image.objects.values_list("source_path", flat=True)) == [str(root / "inside.jpg")]
    assert job.result["duplicates"] == 1
    out = sources.LINK_OUTSIDE
    assert issues(job) == {
        str(root / "passwd.jpg"): out, str(root / "secret.jpg"): out, str(root / "relative.jpg"): out,
        str(root / "elsewhere"): out, str(root / "broken.jpg"): sources.BROKEN_LINK,
    }


def test_a_link_named_on_the_command_line_is_followed(tmp_path):
    (tmp_path / "real.jpg").write_bytes(images.jpeg(seed=64))
    hostile.symlink_out(tmp_path / "link.jpg", tmp_path / "real.jpg")
    job = import_inline(tmp_path / "link.jpg")
    assert job.result["imported"] == 1


# --- PDFs (item 8) ----------------------------------------------------------------------------------


def test_a_page_tree_claiming_9000_pages_is_recorded_with_the_pages_it_has(tmp_path):
    (tmp_path / "liar.pdf").write_bytes(hostile.lying_page_count_pdf(claimed=9000))
    job = import_inline(tmp_path)
    document = Document.objects.get()
    assert (document.page_count, len(document.page_sizes), document.images.count()) == (1, 1, 1)
    assert JobIssue.objects.filter(job=job).count() == 1


def test_a_huge_scanned_page_is_rendered_at_the_largest_size_the_pixel_limit_allows(tmp_path, settings):
    settings.IMAGE_MAX_PIXELS = 1_500_000  # not a root of a whole number: rounding up must not pass it
    (tmp_path / "map.pdf").write_bytes(hostile.huge_page_pdf(14_400))
    job = import_inline(tmp_path)
    assert job.result["imported"] == 1 and job.result["failed"] == 0
    page = Document.objects.get().images.get()
    assert page.width * page.height <= 1_500_000 and page.width >= 1_200
    stored = storage.media_path(page.file.name).read_bytes()
    assert PILImage.open(io.BytesIO(stored)).size == (page.width, page.height)


# --- uploads (item 10) ------------------------------------------------------------------------------


@pytest.fixture
def uploader(client):
    client.force_login(UserFactory(roles=["analyst"]))
    return client


def test_a_multipage_tiff_upload_becomes_an_import_job_and_a_small_image_is_imported_at_once(uploader):
    response = uploader.post("/api/images/upload/", {"files": [
        SimpleUploadedFile("scan.tif", images.multipage_tiff(pages=3, seed=70)),
        SimpleUploadedFile("photo.png", images.png(seed=71))], "label": "survey"})
    assert response.status_code == 202
    body = response.json()
    results = {r["name"]: r for r in body["results"]}
    assert results["photo.png"]["status"] == "imported"
    assert results["scan.tif"]["status"] == "queued" and f"#{body['job']['id']}" in results["scan.tif"]["message"]
    assert not Document.objects.exists()  # not in this request: the workers import it
    ingest_job_run(job_id=body["job"]["id"], inline=True)
    document = Document.objects.get()
    assert document.page_count == 3 and set(document.images.values_list("label", flat=True)) == {"survey"}


def test_a_large_image_upload_becomes_an_import_job(uploader, monkeypatch):
    monkeypatch.setattr(ingest, "UPLOAD_INLINE_MAX_BYTES", 5_000)
    big = images.jpeg(seed=72)
    assert len(big) > 5_000
    response = uploader.post("/api/images/upload/", {"files": [SimpleUploadedFile("big.jpg", big)]})
    assert response.status_code == 202 and response.json()["results"][0]["status"] == "queued"
    ingest_job_run(job_id=response.json()["job"]["id"], inline=True)
    assert Image.objects.get().original_name == "big.jpg"


def test_small_image_uploads_are_answered_at_once(uploader):
    response = uploader.post("/api/images/upload/", {"files": [SimpleUploadedFile("a.jpg", images.jpeg(seed=73))]})
    assert response.status_code == 200 and response.json()["job"] is None
    assert response.json()["results"][0]["status"] == "imported"
