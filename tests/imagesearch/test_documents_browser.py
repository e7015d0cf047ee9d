"""An analyst uploads documents on the Documents page (headless Chromium, a real Celery worker),
follows the import, and goes from a picture outlined on a page preview to the picture."""

from __future__ import annotations

import pytest

from bench.pdfgen import encrypt_pdf, scanned_pdf
from imagesearch.models import Document
from tests.conftest import CHROMIUM, browser_login
from tests.factories import UserFactory
from tests.imagesearch.test_document_ingest import report_pdf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


def test_an_analyst_uploads_documents_follows_the_import_and_opens_a_picture_from_its_page(
        browser_page, live_server, celery_worker_process, settings, tmp_path):
    worker_media, _log = celery_worker_process
    settings.MEDIA_ROOT = worker_media  # the worker's files are the live server's
    (tmp_path / "Survey report.pdf").write_bytes(report_pdf(3, seed=41))
    (tmp_path / "Scanned letter.pdf").write_bytes(scanned_pdf(1, seed=42, dpi=72))
    (tmp_path / "Locked.pdf").write_bytes(encrypt_pdf(report_pdf(1, seed=43)))
    UserFactory(username="ann", roles=["analyst"])

    page = browser_page
    browser_login(page, live_server.url, "ann")
    page.click("nav >> text=Documents")
    page.set_input_files("input[name=files]", [str(tmp_path / n) for n in
                                                ("Survey report.pdf", "Scanned letter.pdf", "Locked.pdf")])
    page.fill("input[name=collection]", "Field reports")
    page.click("#document-upload button[type=submit]")
    page.wait_for_selector(".messages >> text=started")
    # the row follows the job without a reload, down to the file that could not be read
    row = page.wait_for_selector('#import-jobs tr[data-status="succeeded"]', timeout=120_000)
    assert "Imported 2 documents and 4 images" in row.inner_text()
    assert "Locked.pdf" in row.inner_text() and "encrypted PDF" in row.inner_text()

    page.reload()
    page.click("table.documents >> text=Survey report")
    page.wait_for_selector("#page-2")
    # each page's preview is rendered and every picture on it is outlined and linked
    page.wait_for_function("() => [...document.querySelectorAll('.page-preview img')].every(i => i.naturalWidth > 0)")
    survey = Document.objects.get(title="Survey report")
    picture = survey.images.get(page_number=2)
    box = page.locator(f'#page-2 a.bbox[href="/images/{picture.pk}/"]')
    box.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/images/{picture.pk}/")
    # the picture leads back to its document at its page
    page.click(f'main a[href^="/documents/{survey.pk}/"]')
    page.wait_for_url(lambda url: url.endswith(f"/documents/{survey.pk}/?page=2#page-2"))
    assert page.get_attribute("#page-2", "class") == "doc-page current"
    assert page.eval_on_selector(".thumb img", "img => img.naturalWidth > 0")  # made when first shown
