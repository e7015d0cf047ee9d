"""Region search: a box drawn on a picture or on a document's page is searched on its own, and stored nowhere."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image as PILImage

from bench.pdfgen import PdfBuilder
from imagesearch.models import Collection, Image
from imagesearch.selectors import search_answer
from imagesearch.services.ingest import image_ingest_bytes
from imagesearch.services.query_uploads import search_query_from_token
from tests.factories import UserFactory, make_image
from tests.photos import photo

pytestmark = pytest.mark.django_db


def _side_by_side(left: PILImage.Image, right: PILImage.Image) -> PILImage.Image:
    height = 256
    left = left.resize((round(left.width * height / left.height), height))
    right = right.resize((round(right.width * height / right.height), height))
    both = PILImage.new("RGB", (left.width + right.width, height), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    return both


def _png(im: PILImage.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def _top_hits(response, criterion, k: int = 3) -> list[int]:
    assert response.status_code == 302, response.content
    token = parse_qs(urlsplit(response["Location"]).query)["q"][0]
    answer = search_answer(query=search_query_from_token(token), criterion=criterion, k=k)
    return [hit.image.pk for hit in answer.hits]


def test_each_half_of_a_picture_finds_what_is_in_that_half(copied_library, criterion, client):
    coffee, rocket = photo("coffee.png"), photo("rocket.jpg")
    both = _side_by_side(coffee, rocket)
    split = coffee.width * 256 / coffee.height / both.width  # where the rocket starts, as a share of the width
    picture = image_ingest_bytes(data=_png(both), original_name="coffee-and-rocket.png",
                                 collection=Collection.objects.get(name="Photos")).image_ids[0]
    images_before = Image.objects.count()
    client.force_login(UserFactory(roles=["analyst"]))
    left = client.post("/search/region/", {"image": picture, "box": f"0,0,{split - 0.01:.4f},1",
                                           "criterion": criterion.pk})
    right = client.post("/search/region/", {"image": picture, "box": f"{split + 0.01:.4f},0,1,1"})
    assert _top_hits(left, criterion)[0] in copied_library["coffee.png"]
    assert _top_hits(right, criterion)[0] in copied_library["rocket.jpg"]
    assert Image.objects.count() == images_before  # the regions were searched, not imported
    page = client.get(left["Location"]).content.decode()
    assert "Similar to a region of coffee-and-rocket.png" in page and "Add to library" in page
    # a region of an upload kept aside works the same way
    token = parse_qs(urlsplit(left["Location"]).query)["q"][0]
    again = client.post("/search/region/", {"q": token, "box": "0.1,0.1,0.9,0.9"})
    assert _top_hits(again, criterion)[0] in copied_library["coffee.png"]


def test_a_region_of_a_document_page_is_searched(copied_library, criterion, client):
    builder = PdfBuilder()
    page = builder.add_page()  # US letter: 612 × 792 points
    buffer = io.BytesIO()
    photo("rocket.jpg").save(buffer, "JPEG", quality=90)
    page.draw(builder.jpeg(buffer.getvalue()), x=320, y=400, w=240, h=160)  # as wide as the photo: 3:2
    page.text("A rocket, on the right", x=72, y=720)
    outcome = image_ingest_bytes(data=builder.to_bytes(), original_name="launch.pdf",
                                 collection=Collection.objects.get(name="Photos"))
    document = Image.objects.get(pk=outcome.image_ids[0]).document
    client.force_login(UserFactory(roles=["analyst"]))
    # the rocket's box on the page, as shares of its width and height (the page's origin is its top left here)
    box = f"{320 / 612:.4f},{(792 - 560) / 792:.4f},{560 / 612:.4f},{(792 - 400) / 792:.4f}"
    response = client.post("/search/region/", {"document": document.pk, "page": 1, "box": box})
    assert "document=" not in response["Location"]  # the whole library is searched, not only this document
    hits = _top_hits(response, criterion)
    rockets = copied_library["rocket.jpg"] | set(outcome.image_ids)
    assert hits[0] in rockets
    assert "a region of launch" in client.get(response["Location"]).content.decode()


def test_a_region_must_be_a_box_on_the_picture(client):
    picture = make_image().pk
    client.force_login(UserFactory(roles=["analyst"]))
    for box in ("0.5,0,0.4,1", "0,0,1", "a,b,c,d", "0,0,1.5,1", ""):
        assert client.post("/search/region/", {"image": picture, "box": box}).status_code == 400, box
    tiny = client.post("/search/region/", {"image": picture, "box": "0,0,0.01,0.01"}, follow=True)
    assert "The region is too small" in tiny.content.decode()
    assert client.post("/search/region/", {"image": 999_999, "box": "0,0,1,1"}).status_code == 404
    client.force_login(UserFactory(roles=["labeler"]))
    assert client.post("/search/region/", {"image": picture, "box": "0,0,1,1"}).status_code == 403
