"""A picture shared by several documents is one library image with an occurrence in each: every page shows it."""

from __future__ import annotations

import pytest

from bench.pdfgen import PdfBuilder, jpeg_photo
from imagesearch.models import Document, Image, ImageOccurrence
from imagesearch.selectors import document_pages
from imagesearch.services.ingest import image_ingest_bytes
from imagesearch.services.library import collection_get_or_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SHARED = jpeg_photo(320, 240, seed=7)


def _pdf(title_seed: int, shared_on_page: int, pages: int = 3) -> bytes:
    builder = PdfBuilder()
    for number in range(1, pages + 1):
        page = builder.add_page()
        page.text(f"Report {title_seed}, page {number}", x=72, y=720)
        if number == shared_on_page:
            page.draw(builder.jpeg(SHARED), x=300, y=480, w=240, h=180)  # top right
        else:
            page.draw(builder.jpeg(jpeg_photo(200, 150, seed=100 * title_seed + number)), x=72, y=100, w=200, h=150)
    return builder.to_bytes()


@pytest.fixture
def two_reports(db):
    collection = collection_get_or_create(name="Reports")
    first = image_ingest_bytes(data=_pdf(1, shared_on_page=2), original_name="first.pdf", collection=collection)
    second = image_ingest_bytes(data=_pdf(2, shared_on_page=3), original_name="second.pdf", collection=collection)
    return [Document.objects.get(pk=outcome.document_id) for outcome in (first, second)]


def test_a_picture_in_two_documents_is_one_image_found_in_both(two_reports):
    first, second = two_reports
    shared = Image.objects.get(occurrences__document=second, document=first)  # first found in the first report
    places = list(ImageOccurrence.objects.filter(image=shared).order_by("document_id"))
    assert [(o.document_id, o.page_number) for o in places] == [(first.pk, 2), (second.pk, 3)]
    assert places[1].place == "p. 3, top right"
    assert Image.objects.filter(sha256=shared.sha256).count() == 1
    # each document's pages show it, at its own page and place there
    second_pages = {page.number: page for page in document_pages(document=second)}
    assert shared in second_pages[3].images and second_pages[3].boxes()
    assert shared in {i for page in document_pages(document=first) for i in page.images}
    # every other picture belongs to one document only
    assert ImageOccurrence.objects.count() == Image.objects.count() + 1


def test_the_pages_and_the_api_show_every_document_of_a_shared_picture(two_reports, client, criterion):
    first, second = two_reports
    shared = ImageOccurrence.objects.filter(document=second, page_number=3).get().image
    client.force_login(UserFactory(roles=["analyst"]))
    page = client.get(f"/images/{shared.pk}/").content.decode()
    assert "Appears in 2 places" in page
    assert f"/documents/{first.pk}/?page=2" in page and f"/documents/{second.pk}/?page=3" in page
    detail = client.get(f"/api/images/{shared.pk}/").json()
    assert [(o["document"]["id"], o["page_number"]) for o in detail["occurrences"]] == [(first.pk, 2), (second.pk, 3)]
    listed = client.get(f"/api/documents/{second.pk}/").json()["images"]
    entry = next(i for i in listed if i["id"] == shared.pk)
    assert entry["page_number"] == 3 and entry["first_found_here"] is False and entry["bbox"]
    assert client.get("/api/images/", {"document": second.pk}).json()["count"] == len(listed)
    assert f'href="/images/{shared.pk}/"' in client.get(f"/documents/{second.pk}/").content.decode()


def test_search_results_name_every_document_and_the_document_filter_finds_shared_pictures(two_reports, client,
                                                                                         criterion):
    from ranking.services.training import training_start, version_train

    first, second = two_reports
    shared = ImageOccurrence.objects.filter(document=second, page_number=3).get().image
    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version_train(version_id=version.pk, embed="inline")
    client.force_login(UserFactory(roles=["analyst"]))
    other = Image.objects.filter(document=first).exclude(pk=shared.pk).first()
    answer = client.post("/api/search", {"image_id": other.pk, "k": 10}, content_type="application/json").json()
    found = next(r for r in answer["results"] if r["image_id"] == shared.pk)
    assert {o["document"]["id"] for o in found["occurrences"]} == {first.pk, second.pk}
    within = client.post("/api/search", {"image_id": other.pk, "k": 10, "document": second.pk},
                         content_type="application/json").json()
    assert shared.pk in [r["image_id"] for r in within["results"]]
    page = client.get("/search/", {"image": other.pk}).content.decode()
    assert f"/documents/{second.pk}/?page=3" in page


def _vector_manual(pages: int = 3) -> bytes:
    """A manual whose figures are all vector drawings: an import takes nothing from it by default."""
    builder = PdfBuilder()
    for number in range(pages):
        page = builder.add_page()
        page.text(f"Chapter {number + 1}: a chart drawn with lines", x=72, y=250)
        for i in range(12):
            page.rect(100 + i * 25, 300, 18, 20 + i * 10 + number * 7, fill=(0.2, 0.3, 0.8 - number * 0.2))
        page.line(95, 300, 400, 300)
        page.line(95, 300, 95, 450)
    return builder.to_bytes()


def test_a_document_with_no_raster_picture_says_why_and_is_read_again_for_its_figures(db, client):
    collection = collection_get_or_create(name="Manuals")
    outcome = image_ingest_bytes(data=_vector_manual(), original_name="manual.pdf", collection=collection)
    document = Document.objects.get(pk=outcome.document_id)
    assert not Image.objects.exists()
    client.force_login(UserFactory(roles=["analyst"]))  # analysts may import documents
    page = client.get(f"/documents/{document.pk}/").content.decode()
    assert "Why no images?" in page and "Take its vector figures" in page and "DOCUMENT_VECTOR_FIGURES" in page
    response = client.post(f"/documents/{document.pk}/read-again/", {"what": "figures"})
    assert response.status_code == 302 and response["Location"] == "/documents/"
    # the job ran on the workers in production; run it here
    from imagesearch.models import Job
    from imagesearch.services.ingest import ingest_job_run

    job = Job.objects.get(params__into_document_id=document.pk)
    assert job.params["pdf_options"] == {"vector_figures": True}
    ingest_job_run(job_id=job.pk, inline=True)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    figures = list(Image.objects.filter(document=document).order_by("page_number"))
    assert [image.page_number for image in figures] == [1, 2, 3]
    assert all(image.metadata.get("kind") == "figure" and image.collection == collection for image in figures)
    assert Document.objects.count() == 1  # the same document, not a second one
    assert ImageOccurrence.objects.filter(document=document).count() == 3
    document.refresh_from_db()
    assert document.metadata["read_again_with"] == ["vector_figures"]
    page = client.get(f"/documents/{document.pk}/").content.decode()
    assert "Why no images?" not in page and "Figure" in page
    # a second reading adds nothing new
    again = client.post(f"/documents/{document.pk}/read-again/", {"what": "figures"})
    assert again.status_code == 302
    ingest_job_run(job_id=Job.objects.filter(params__into_document_id=document.pk).latest("pk").pk, inline=True)
    assert Image.objects.filter(document=document).count() == 3
    assert client.post(f"/documents/{document.pk}/read-again/", {"what": "everything"}, follow=True
                       ).content.decode().count("not &#x27;everything&#x27;") == 1
    client.force_login(UserFactory(roles=["labeler"]))
    assert client.post(f"/documents/{document.pk}/read-again/", {"what": "pages"}).status_code == 403
