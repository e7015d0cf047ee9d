"""Library pages as a signed-in user sees them."""

from __future__ import annotations

import pytest

from imagesearch.models import Document, Image
from tests import images
from tests.factories import CollectionFactory, UserFactory, make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client):
    client.force_login(UserFactory(roles=["analyst"]))
    return client


def test_pages_need_a_login(client):
    image = make_image()
    for url in ("/images/", f"/images/{image.pk}/", f"/media/{image.thumbnail.name}"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_login_page_and_logout(client):
    UserFactory(username="ann", roles=["analyst"])
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "ann", "password": "pw"})
    assert response.status_code == 302
    assert client.get("/images/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/images/").status_code == 302


def test_grid_shows_thumbnails_and_filters(signed_in):
    shoes = CollectionFactory(name="Shoes")
    boot = make_image(collection=shoes, label="boot", name="boot.jpg")
    make_image(label="bag", name="bag.jpg")
    page = signed_in.get("/images/").content.decode()
    assert page.count('class="thumb"') == 2 and f"/media/{boot.thumbnail.name}" in page
    filtered = signed_in.get("/images/", {"collection": shoes.pk, "label": "boot"}).content.decode()
    assert filtered.count('class="thumb"') == 1 and "boot.jpg" in filtered


def test_grid_paginates(signed_in, settings):
    for _ in range(3):
        make_image()
    from imagesearch import views
    views.IMAGES_PER_PAGE, old = 2, views.IMAGES_PER_PAGE
    try:
        first = signed_in.get("/images/").content.decode()
        second = signed_in.get("/images/?page=2").content.decode()
    finally:
        views.IMAGES_PER_PAGE = old
    assert first.count('class="thumb"') == 2 and "Page 1 of 2" in first
    assert second.count('class="thumb"') == 1


def test_image_page_links_to_its_document_and_page(signed_in):
    from imagesearch.services.ingest import image_ingest_bytes

    outcome = image_ingest_bytes(
        data=images.multipage_tiff(pages=2), original_name="scan.tif", collection=CollectionFactory()
    )
    document = Document.objects.get(pk=outcome.document_id)
    second = Image.objects.get(document=document, page_number=2)
    page = signed_in.get(f"/images/{second.pk}/").content.decode()
    assert f'href="/documents/{document.pk}/?page=2#page-2"' in page and "p. 2" in page
    doc_page = signed_in.get(f"/documents/{document.pk}/?page=2").content.decode()
    assert doc_page.count('class="thumb') == 2 and 'id="page-2"' in doc_page


def test_stored_files_are_served_to_signed_in_users(signed_in):
    image = make_image()
    response = signed_in.get(f"/media/{image.thumbnail.name}")
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert b"".join(response.streaming_content)[:4] == b"RIFF"
    assert signed_in.get("/media/../secret_key").status_code == 404
    assert signed_in.get("/media/originals/none.jpg").status_code == 404
