"""Importing folders of PDFs and scans: documents, their pictures, page links, bad files, re-imports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
from django.core.management import call_command

from bench.pdfgen import PdfBuilder, encrypt_pdf, jpeg_photo, scanned_pdf
from imagesearch import documents, storage
from imagesearch.models import Document, Image, IngestChunk, Job, JobIssue
from imagesearch.services.ingest import ingest_chunk_process, ingest_job_create, ingest_job_run
from imagesearch.services.library import media_sweep_orphans
from tests import images


def report_pdf(pages: int, seed: int, logo: bool = False) -> bytes:
    """A photo and a line of text per page (and the same logo on every page, if asked)."""
    b = PdfBuilder()
    logo_xobj = b.jpeg(jpeg_photo(100, 100, seed=999)) if logo else None
    for i in range(pages):
        page = b.add_page()
        page.text(f"Report {seed}, page {i + 1}", x=72, y=740)
        page.draw(b.jpeg(jpeg_photo(320, 240, seed=seed * 100 + i)), x=72, y=300, w=320, h=240)
        if logo_xobj:
            page.draw(logo_xobj, x=520, y=720, w=50, h=50)
    return b.to_bytes()


@pytest.fixture
def document_folder(tmp_path):
    root = tmp_path / "library"
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "a.pdf").write_bytes(report_pdf(3, seed=1))
    (root / "reports" / "b.pdf").write_bytes(report_pdf(2, seed=2))
    (root / "letterhead.pdf").write_bytes(report_pdf(4, seed=3, logo=True))
    (root / "scan.pdf").write_bytes(scanned_pdf(2, seed=4, dpi=72))
    (root / "scan.tif").write_bytes(images.multipage_tiff(pages=3, seed=5))
    (root / "photo.jpg").write_bytes(images.jpeg(seed=6))
    good = report_pdf(1, seed=7)
    (root / "encrypted.pdf").write_bytes(encrypt_pdf(good, user_password="secret"))
    (root / "truncated.pdf").write_bytes(good[: len(good) // 2])
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(3000) + b"\n%%EOF\n")
    with zipfile.ZipFile(root / "archive.zip", "w") as archive:
        archive.writestr("box/c.pdf", report_pdf(1, seed=8))
        archive.writestr("box/d.pdf", report_pdf(2, seed=9))
    return root


@pytest.mark.django_db
def test_a_folder_of_pdfs_and_scans_becomes_documents_whose_images_lead_back_to_their_pages(
    document_folder, capsys, settings
):
    settings.DOCUMENT_RENDER_DPI = 50
    settings.INGEST_DOCUMENTS_PER_CHUNK = 3
    call_command("import_documents", str(document_folder), "--inline", "--collection", "Reports")
    out = capsys.readouterr().out

    titles = dict(Document.objects.values_list("original_name", "page_count"))
    assert titles == {"a.pdf": 3, "b.pdf": 2, "letterhead.pdf": 4, "scan.pdf": 2, "scan.tif": 3,
                      "c.pdf": 1, "d.pdf": 2}
    per_document = {d.original_name: list(d.images.order_by("page_number").values_list("page_number", flat=True))
                    for d in Document.objects.all()}
    assert per_document == {"a.pdf": [1, 2, 3], "b.pdf": [1, 2], "letterhead.pdf": [1, 2, 3, 4],
                            "scan.pdf": [1, 2], "scan.tif": [1, 2, 3], "c.pdf": [1], "d.pdf": [1, 2]}
    # each photo is stored as the JPEG it was in the PDF, at its place on the page
    a = Document.objects.get(original_name="a.pdf")
    first = a.images.get(page_number=1)
    assert storage.media_path(first.file.name).read_bytes() == jpeg_photo(320, 240, seed=100)
    assert (first.format, first.width, first.height, first.bbox) == ("JPEG", 320, 240, [72.0, 252.0, 392.0, 492.0])
    assert first.metadata == {"kind": "embedded"} and first.collection.name == "Reports"
    assert a.page_sizes == [[612.0, 792.0]] * 3 and a.media_type == "application/pdf"
    assert storage.media_path(a.file.name).read_bytes() == (document_folder / "reports" / "a.pdf").read_bytes()
    # the logo repeated on every page is no picture of the library
    letterhead = Document.objects.get(original_name="letterhead.pdf")
    assert letterhead.metadata["skipped"] == {"repeated on many pages": 4}
    # scanned pages are rendered whole
    scan_pages = Document.objects.get(original_name="scan.pdf").images.all()
    assert {(i.metadata["kind"], i.width, i.height) for i in scan_pages} == {("page", 425, 550)}
    assert Image.objects.filter(document=None).count() == 1  # photo.jpg

    reasons = dict(JobIssue.objects.values_list("source", "message"))
    assert reasons == {
        str(document_folder / "encrypted.pdf"): documents.ENCRYPTED,
        str(document_folder / "truncated.pdf"): documents.TRUNCATED,
        str(document_folder / "corrupt.pdf"): reasons[str(document_folder / "corrupt.pdf")],
    }
    assert reasons[str(document_folder / "corrupt.pdf")].startswith("corrupt PDF")
    job = Job.objects.get()
    assert job.result["documents"] == 7 and job.result["imported"] == 18 and job.result["failed"] == 3
    assert (job.status, job.progress_done, job.progress_total) == ("succeeded", 11, 11)
    assert job.rate > 0 and job.result["images_per_second"] > 0
    assert "Imported 7 documents and 18 images; 0 already in the library; 3 failed." in out
    # the 9 PDFs and the TIFF scan went whole into tasks of up to 3 documents; the photo into another
    assert sorted(len(c.items) for c in IngestChunk.objects.all()) == [1, 1, 3, 3, 3]

    # importing the folder again adds nothing: documents are recognised by their SHA-256
    call_command("import_documents", str(document_folder), "--inline", "--collection", "Reports")
    assert "Imported 0 images; 8 already in the library; 3 failed." in capsys.readouterr().out
    assert Document.objects.count() == 7 and Image.objects.count() == 18


@pytest.mark.django_db
def test_large_documents_get_a_task_of_their_own_and_small_ones_share(tmp_path, settings):
    sizes = {"big.pdf": 5000, "small1.pdf": 1000, "small2.pdf": 1000, "small3.pdf": 1500, "photo.jpg": 10}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    settings.INGEST_DOCUMENT_CHUNK_BYTES = 3000
    settings.INGEST_DOCUMENTS_PER_CHUNK = 8
    job = ingest_job_create(paths=[tmp_path])
    chunks = [[item[0].rsplit("/", 1)[-1] for item in c.items] for c in IngestChunk.objects.filter(job=job)
              .order_by("index")]
    assert chunks == [["big.pdf"], ["small1.pdf", "small2.pdf"], ["small3.pdf"], ["photo.jpg"]]
    assert job.message == "4 documents and 1 file to import into Default"


@pytest.mark.django_db
def test_an_image_already_in_the_library_stays_where_it_is_and_the_document_still_comes_in(tmp_path):
    photo = jpeg_photo(320, 240, seed=100)  # page 1 of report_pdf(…, seed=1)
    (tmp_path / "photo.jpg").write_bytes(photo)
    (tmp_path / "a.pdf").write_bytes(report_pdf(3, seed=1))
    job = ingest_job_create(paths=[tmp_path / "photo.jpg"])
    ingest_job_run(job_id=job.pk, inline=True)
    job = ingest_job_create(paths=[tmp_path / "a.pdf"])
    ingest_job_run(job_id=job.pk, inline=True)
    document = Document.objects.get()
    assert list(document.images.values_list("page_number", flat=True).order_by("page_number")) == [2, 3]
    assert Image.objects.get(sha256=Image.objects.get(document=None).sha256).document is None


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_in_the_middle_of_a_document_leaves_nothing_and_the_retry_imports_it(
    tmp_path, settings, media_root
):
    """A real SIGKILL while the document's pictures are being stored: no half document, then a redo."""
    from django.db import connection

    from tests.conftest import _url_with_database

    settings.DOCUMENT_RENDER_DPI = 150
    settings.DOCUMENT_RENDER_ALL_PAGES = True  # slow enough to be killed in the middle
    big = tmp_path / "big.pdf"
    big.write_bytes(report_pdf(60, seed=11))
    job = ingest_job_create(paths=[big])
    chunk = IngestChunk.objects.get(job=job)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": _url_with_database(settings.DATABASE_URL, connection.settings_dict["NAME"]),
           "IMAGESEARCH_MEDIA_DIR": str(media_root), "DOCUMENT_RENDER_ALL_PAGES": "1", "DOCUMENT_RENDER_DPI": "150"}
    code = ("import django; django.setup(); from imagesearch.services.ingest import ingest_chunk_process; "
            f"ingest_chunk_process(chunk_id={chunk.pk})")
    worker = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # the pictures' files are written before any row: once some are there, the import is mid-way
        while not (media_root / "thumbs").exists() or sum(1 for _ in (media_root / "thumbs").rglob("*.webp")) < 5:
            assert worker.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline, "no picture was stored in time"
            time.sleep(0.05)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert Document.objects.count() == 0 and Image.objects.count() == 0
    chunk.refresh_from_db()
    assert chunk.status == IngestChunk.Status.PENDING

    ingest_chunk_process(chunk_id=chunk.pk)  # what the redelivered task does
    document = Document.objects.get()
    assert document.page_count == 60
    assert document.images.filter(metadata__kind="embedded").count() == 60
    assert document.images.filter(metadata__kind="page").count() == 60
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    # the killed run's files are either used by the redo or swept as orphans
    media_sweep_orphans(min_age_seconds=0)
    for image in document.images.all():
        assert storage.media_path(image.file.name).exists()
        # rendered pages have their thumbnail; embedded photos get theirs when first shown
        assert storage.media_path(image.thumbnail.name).exists() == (image.metadata["kind"] == "page")


@pytest.mark.django_db
def test_a_picture_committed_by_another_worker_meanwhile_stays_theirs_and_the_document_comes_in(
    tmp_path, monkeypatch
):
    """The chunk's two-statement insert collides; the items then go in one by one, each in a savepoint."""
    from imagesearch.models import Collection
    from imagesearch.services import import_rows, ingest

    (tmp_path / "a.pdf").write_bytes(report_pdf(2, seed=11))
    (tmp_path / "b.pdf").write_bytes(report_pdf(1, seed=12))
    job = ingest_job_create(paths=[tmp_path])
    photo = jpeg_photo(320, 240, seed=1100)  # page 1 of a.pdf
    # another worker commits the photo after this chunk looked for it in the library
    ingest.image_ingest_bytes(data=photo, original_name="photo.jpg", collection=Collection.objects.create(name="O"))
    monkeypatch.setattr(import_rows, "_shas_in_library", lambda shas: set())
    one_by_one = []
    real_insert = import_rows.rows_insert_item
    monkeypatch.setattr(import_rows, "rows_insert_item", lambda item, **kw: one_by_one.append(item.source) or real_insert(item, **kw))
    ingest_job_run(job_id=job.pk, inline=True)
    assert len(one_by_one) == 2  # the fallback ran
    a = Document.objects.get(original_name="a.pdf")
    assert list(a.images.values_list("page_number", flat=True)) == [2]
    assert Image.objects.get(original_name="photo.jpg").document is None
    assert Document.objects.get(original_name="b.pdf").images.count() == 1
    assert Job.objects.get(pk=job.pk).result["documents"] == 2


@pytest.mark.django_db
def test_done_when_a_folder_of_pdfs_and_scans_is_a_searchable_library_whose_images_lead_to_their_pages(
    document_folder, client, criterion
):
    """The issue's "done when": import a folder, train the first model, search, follow each result."""
    from ranking.services.training import training_start, version_train
    from tests.conftest import TINY_AUTOENCODER
    from tests.factories import UserFactory

    call_command("import_documents", str(document_folder), "--inline")
    version_train(version_id=training_start(criterion=criterion, kind="autoencoder", dispatch=False,
                                            hyperparameters=TINY_AUTOENCODER).pk, embed="inline")
    client.force_login(UserFactory(roles=["analyst"]))
    query = Image.objects.get(document__original_name="b.pdf", page_number=2)
    response = client.post("/api/search/", {"image_id": query.pk, "k": 50})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == Image.objects.count() - 1  # the whole library but the query itself
    for result in results:
        image = Image.objects.get(pk=result["image_id"])
        if image.document_id is None:
            assert result["document_url"] is None  # the one loose photo
            continue
        assert result["document_url"] == f"/documents/{image.document_id}/?page={image.page_number}#page-{image.page_number}"
        page = client.get(result["document_url"].split("#")[0]).content.decode()
        assert f'class="doc-page current" id="page-{image.page_number}"' in page
        assert f'href="/images/{image.pk}/"' in page


@pytest.mark.django_db
def test_a_picture_from_a_document_is_called_by_the_document_page_and_place(client, settings):
    """All of a PDF's pictures have its file's name: pages show the document's title, the page and where."""
    from imagesearch.services.ingest import image_ingest_bytes
    from imagesearch.services.library import collection_get_or_create
    from tests.factories import UserFactory

    settings.DOCUMENT_RENDER_DPI = 50
    collection = collection_get_or_create(name="Reports")
    b = PdfBuilder()
    page = b.add_page()
    page.draw(b.jpeg(jpeg_photo(320, 240, seed=41)), x=72, y=300, w=320, h=240)  # the middle of the page
    page.draw(b.jpeg(jpeg_photo(200, 150, seed=42)), x=400, y=640, w=200, h=150)  # its top right corner
    image_ingest_bytes(data=b.to_bytes(), original_name="survey-2019.pdf", collection=collection)
    image_ingest_bytes(data=scanned_pdf(1, seed=43, dpi=72), original_name="scan.pdf", collection=collection)
    photo = image_ingest_bytes(data=images.jpeg(seed=44), original_name="photo.jpg", collection=collection)

    titles = {i.title for i in Image.objects.select_related("document")}
    assert titles == {"survey-2019, p. 1, centre", "survey-2019, p. 1, top right", "scan, p. 1, whole page",
                      "photo.jpg"}
    client.force_login(UserFactory(roles=["analyst"]))
    library = client.get("/images/").content.decode()
    assert "survey-2019, p. 1, top right" in library
    assert client.get(f"/api/images/{photo.image_ids[0]}/").json()["title"] == "photo.jpg"
