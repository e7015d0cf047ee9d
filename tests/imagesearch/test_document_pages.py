"""Document pages, previews, downloads, and document uploads through the page and the API."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from bench.pdfgen import encrypt_pdf
from imagesearch import storage
from imagesearch.models import Document, IngestChunk, Job
from imagesearch.services.ingest import image_ingest_bytes, ingest_job_run
from tests import images
from tests.factories import CollectionFactory, UserFactory
from tests.imagesearch.test_document_ingest import report_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(settings):
    outcome = image_ingest_bytes(data=report_pdf(3, seed=1), original_name="Annual report.pdf",
                                 collection=CollectionFactory(name="Reports"))
    return Document.objects.get(pk=outcome.document_id)


@pytest.fixture
def analyst(client):
    client.force_login(UserFactory(roles=["analyst"]))
    return client


def test_the_document_page_lists_its_images_by_page_with_their_place_on_a_preview(analyst, report):
    page2 = report.images.get(page_number=2)
    response = analyst.get(f"/documents/{report.pk}/?page=2")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="doc-page current" id="page-2"' in html
    assert f'href="/images/{page2.pk}/"' in html and f"/documents/{report.pk}/pages/2.webp" in html
    # the box on the preview: 72..392 × 252..492 points of a 612 × 792 page
    assert '<rect x="11.765%" y="31.818%" width="52.288%" height="30.303%"/>' in html
    assert 'width="612" height="792"' in html  # the preview's place, kept before it loads
    assert f'href="/documents/{report.pk}/download/"' in html


def test_the_image_page_and_search_results_link_to_the_document_at_the_right_page(analyst, report):
    image = report.images.get(page_number=3)
    html = analyst.get(f"/images/{image.pk}/").content.decode()
    assert f'href="/documents/{report.pk}/?page=3#page-3"' in html


def test_a_page_preview_is_rendered_once_and_then_served_from_the_store(analyst, report, settings):
    settings.DOCUMENT_PREVIEW_WIDTH = 306
    response = analyst.get(f"/documents/{report.pk}/pages/1.webp")
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    preview = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
    assert preview.size == (306, 396)
    stored = list((storage.media_path("previews")).rglob("*.webp"))
    assert len(stored) == 1
    analyst.get(f"/documents/{report.pk}/pages/1.webp")
    assert list((storage.media_path("previews")).rglob("*.webp")) == stored
    assert analyst.get(f"/documents/{report.pk}/pages/4.webp").status_code == 404


def test_a_multipage_scan_has_previews_from_its_page_images(analyst):
    outcome = image_ingest_bytes(data=images.multipage_tiff(pages=2, seed=3), original_name="scan.tif",
                                 collection=CollectionFactory())
    response = analyst.get(f"/documents/{outcome.document_id}/pages/2.webp")
    assert response.status_code == 200
    assert PILImage.open(io.BytesIO(b"".join(response.streaming_content))).format == "WEBP"


def test_the_original_is_downloaded_under_its_name_by_analysts_not_by_labelers(client, analyst, report):
    response = analyst.get(f"/documents/{report.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Annual report.pdf"'
    assert b"".join(response.streaming_content) == report_pdf(3, seed=1)
    client.force_login(UserFactory(roles=["labeler"]))
    assert client.get(f"/documents/{report.pk}/download/").status_code == 403
    assert client.get(f"/documents/{report.pk}/").status_code == 403


def test_uploading_documents_on_the_documents_page_starts_an_import_shown_with_its_problems(
    analyst, settings, django_capture_on_commit_callbacks
):
    files = [SimpleUploadedFile("one.pdf", report_pdf(2, seed=5), "application/pdf"),
             SimpleUploadedFile("locked.pdf", encrypt_pdf(report_pdf(1, seed=6)), "application/pdf")]
    response = analyst.post("/documents/", {"files": files, "collection": "Uploads"})
    assert response.status_code == 302
    job = Job.objects.get()
    assert IngestChunk.objects.filter(job=job).count() == 1  # two small documents: one task
    with django_capture_on_commit_callbacks(execute=True):
        ingest_job_run(job_id=job.pk, inline=True)  # what the workers do
    html = analyst.get("/documents/").content.decode()
    assert "Imported 1 document and 2 images; 0 already in the library; 1 failed." in html
    assert "locked.pdf" in html and "encrypted PDF" in html
    assert ">one.pdf<" not in html and ">one<" in html  # listed under its title
    # the uploaded copies are gone once the job is done; the library has its own
    assert not any(settings.DOCUMENT_UPLOAD_DIR.iterdir())


def test_labelers_cannot_upload_documents(client):
    client.force_login(UserFactory(roles=["labeler"]))
    response = client.post("/api/documents/upload/", {"files": [SimpleUploadedFile("a.pdf", b"%PDF")]})
    assert response.status_code == 403


def test_the_upload_api_answers_with_the_job_and_the_imports_api_follows_it(analyst, settings):
    archive = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.pdf", report_pdf(1, seed=7))
        z.writestr("b.pdf", report_pdf(2, seed=8))
        z.writestr("broken.pdf", b"%PDF-1.7 nothing else")
    response = analyst.post("/api/documents/upload/", {
        "files": [SimpleUploadedFile("batch.zip", archive.getvalue(), "application/zip")], "collection": "Zips"})
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert response.json()["status"] == "queued" and response.json()["progress_total"] == 3
    ingest_job_run(job_id=job_id, inline=True)
    (job,) = analyst.get("/api/documents/imports/").json()
    assert job["id"] == job_id and job["status"] == "succeeded"
    assert (job["result"]["documents"], job["result"]["imported"], job["result"]["failed"]) == (2, 3, 1)
    assert job["issues"] == [{"source": job["issues"][0]["source"], "message": "truncated PDF: the file ends "
                              "before its end-of-file marker (%%EOF)"}]
    assert job["issues"][0]["source"].endswith("batch.zip!/broken.pdf")
    listed = analyst.get("/api/documents/?q=b").json()["results"]
    assert [d["title"] for d in listed] == ["b"]
    detail = analyst.get(f"/api/documents/{listed[0]['id']}/").json()
    assert [(i["page_number"], i["kind"], i["bbox"]) for i in detail["images"]] == [
        (1, "embedded", [72.0, 252.0, 392.0, 492.0]), (2, "embedded", [72.0, 252.0, 392.0, 492.0])]


def test_an_embedded_photo_gets_its_thumbnail_when_first_shown(analyst, report, settings):
    image = report.images.get(page_number=1)
    assert not storage.media_path(image.thumbnail.name).exists()  # the import only checked the JPEG
    response = analyst.get(f"/media/{image.thumbnail.name}")
    assert response.status_code == 200
    thumbnail = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (settings.THUMBNAIL_SIZE, settings.THUMBNAIL_SIZE * 3 // 4))
    assert storage.media_path(image.thumbnail.name).exists()
    assert analyst.get("/media/thumbs/00/00/" + "0" * 64 + ".webp").status_code == 404


def test_a_corrupt_jpeg_inside_a_pdf_is_left_out_with_the_page_named(tmp_path):
    from bench.pdfgen import PdfBuilder, jpeg_photo

    b = PdfBuilder()
    good, bad = jpeg_photo(200, 150, seed=1), jpeg_photo(200, 150, seed=2)
    b.add_page().draw(b.jpeg(good), 72, 72, 200, 150)
    b.add_page().draw(b.jpeg(bad[: len(bad) // 2]), 72, 72, 200, 150)
    outcome = image_ingest_bytes(data=b.to_bytes(), original_name="mixed.pdf", collection=CollectionFactory())
    assert outcome.status == "imported" and len(outcome.image_ids) == 1
    assert outcome.warnings and outcome.warnings[0].startswith("page 2: an image was left out (truncated or corrupt")


def test_a_photo_damaged_inside_gets_a_placeholder_thumbnail_once_and_is_marked(analyst, report):
    image = report.images.get(page_number=1)
    path = storage.media_path(image.file.name)
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xda")  # the scan: the header and end marker stay as they were
    data[start + 20 : len(data) - 2] = bytes(len(data) - 22 - start)
    data[start + 20 : start + 40] = b"\xff\xd0" * 10  # restart markers out of order
    path.write_bytes(bytes(data))
    response = analyst.get(f"/media/{image.thumbnail.name}")
    assert response.status_code == 200
    thumbnail = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
    image.refresh_from_db()
    if "unreadable" in image.metadata:  # Pillow refused the damaged scan: a grey square, remembered
        assert thumbnail.getextrema() == ((200, 200), (203, 203), (210, 210))
    assert storage.media_path(image.thumbnail.name).exists()  # made once, whatever came out


def test_labelers_see_the_pictures_they_judge_but_not_documents_or_page_previews(analyst, report):
    from django.test import Client

    analyst.get(f"/documents/{report.pk}/pages/1.webp")  # a preview is stored
    preview = next(storage.media_path("previews").rglob("*.webp")).relative_to(storage.media_path(""))
    image = report.images.get(page_number=1)
    labeler = Client()
    labeler.force_login(UserFactory(roles=["labeler"]))
    assert labeler.get(f"/media/{image.file.name}").status_code == 200
    assert labeler.get(f"/media/{report.file.name}").status_code == 403
    assert labeler.get(f"/media/{preview}").status_code == 403
    assert analyst.get(f"/media/{preview}").status_code == 200


def test_the_image_upload_api_sends_documents_to_the_document_upload(analyst):
    response = analyst.post("/api/images/upload/", {"files": [
        SimpleUploadedFile("report.pdf", report_pdf(1, seed=12)), SimpleUploadedFile("photo.png", images.png(seed=3))]})
    results = {r["name"]: r for r in response.json()["results"]}
    assert results["report.pdf"]["status"] == "failed" and "/api/documents/upload/" in results["report.pdf"]["message"]
    assert results["photo.png"]["status"] == "imported"
    assert not Document.objects.exists()


def test_uploads_of_a_cancelled_import_are_swept(analyst, settings):
    import os

    from imagesearch.services.jobs import job_cancel
    from imagesearch.services.library import media_sweep_orphans

    analyst.post("/documents/", {"files": [SimpleUploadedFile("one.pdf", report_pdf(1, seed=13))]})
    job = Job.objects.get()
    (upload,) = settings.DOCUMENT_UPLOAD_DIR.iterdir()
    os.utime(upload, (0, 0))  # old enough to sweep
    assert media_sweep_orphans(min_age_seconds=60) == 0  # its job may still run
    job_cancel(job_id=job.pk)
    assert media_sweep_orphans(min_age_seconds=60) == 1
    assert not any(settings.DOCUMENT_UPLOAD_DIR.iterdir())
