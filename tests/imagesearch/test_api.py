"""The image-library REST API, as a client would use it."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from imagesearch import storage
from imagesearch.models import Image
from tests import images
from tests.factories import CollectionFactory, UserFactory, make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_for():
    def make(*permissions):
        api = APIClient()
        api.force_authenticate(UserFactory(permissions=["imagesearch.search", *permissions]))
        return api
    return make


def test_anonymous_requests_are_refused():
    response = APIClient().get("/api/images/")
    assert response.status_code in (401, 403)


def test_token_authentication(client):
    user = UserFactory(roles=["analyst"])
    token = Token.objects.create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/images/").status_code == 200


def test_list_is_paginated_and_filtered(client_for):
    shoes, bags = CollectionFactory(name="Shoes"), CollectionFactory(name="Bags")
    for _ in range(3):
        make_image(collection=shoes, label="boot")
    make_image(collection=shoes, label="sandal")
    make_image(collection=bags, label="boot")
    api = client_for()
    everything = api.get("/api/images/").json()
    assert everything["count"] == 5
    by_collection = api.get("/api/images/", {"collection": shoes.pk}).json()
    assert by_collection["count"] == 4
    boots = api.get("/api/images/", {"collection": shoes.pk, "label": "boot"}).json()
    assert boots["count"] == 3 and {r["label"] for r in boots["results"]} == {"boot"}
    first = boots["results"][0]
    assert first["thumbnail_url"].startswith("/media/thumbs/") and first["collection"]["name"] == "Shoes"
    assert api.get("/api/images/", {"collection": "x"}).status_code == 400


def test_detail(client_for):
    image = make_image(label="boot")
    body = client_for().get(f"/api/images/{image.pk}/").json()
    assert body["sha256"] == image.sha256 and body["width"] == 320 and body["height"] == 240
    assert body["page_url"] == f"/images/{image.pk}/"


def test_upload_returns_a_result_per_file(client_for):
    api = client_for("imagesearch.add_image")
    files = [
        SimpleUploadedFile("a.jpg", images.jpeg(seed=1)),
        SimpleUploadedFile("b.png", images.png(seed=2)),
        SimpleUploadedFile("broken.jpg", b"garbage"),
        SimpleUploadedFile("again.jpg", images.jpeg(seed=1)),
    ]
    response = api.post("/api/images/upload/", {"files": files, "collection": "Uploads", "label": "x"},
                        format="multipart")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["imported", "imported", "failed", "duplicate"]
    assert "not a supported image" in results[2]["message"]
    assert Image.objects.filter(collection__name="Uploads", label="x").count() == 2


def test_upload_needs_the_add_permission(client_for):
    response = client_for().post(
        "/api/images/upload/", {"files": [SimpleUploadedFile("a.jpg", images.jpeg())]}, format="multipart"
    )
    assert response.status_code == 403
    assert not Image.objects.exists()


def test_delete_removes_row_and_files(client_for, django_capture_on_commit_callbacks):
    image = make_image()
    paths = [storage.media_path(image.file.name), storage.media_path(image.thumbnail.name)]
    assert client_for().delete(f"/api/images/{image.pk}/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for("imagesearch.delete_image").delete(f"/api/images/{image.pk}/")
    assert response.status_code == 204
    assert not Image.objects.exists() and not any(p.exists() for p in paths)


def test_openapi_schema_builds_and_lists_the_endpoints(client_for):
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert {"/api/images/", "/api/images/upload/", "/api/images/{image_id}/", "/api/search/",
            "/api/search/feedback/", "/api/documents/", "/api/documents/upload/", "/api/documents/imports/",
            "/api/documents/{document_id}/"} <= set(schema["paths"])
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache  # no warnings, no errors
    response = client_for().get("/api/schema/")
    assert response.status_code == 200 and b"openapi" in response.content
    assert client_for().get("/api/docs/").status_code == 200
