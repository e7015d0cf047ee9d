"""Region search in headless Chromium: a box drawn on a document's page preview, and one moved with the keys."""

from __future__ import annotations

import io

import pytest

from bench.pdfgen import PdfBuilder
from imagesearch.models import Collection, Image
from imagesearch.services.ingest import image_ingest_bytes
from tests.conftest import CHROMIUM, browser_login
from tests.factories import UserFactory
from tests.photos import photo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


def test_an_analyst_draws_a_box_on_a_page_preview_and_searches_with_it(
        browser_page, live_server, transactional_db, criterion, copied_library):
    builder = PdfBuilder()
    page = builder.add_page()  # 612 × 792 points
    page.text("Launch report: the rocket is on the right, the coffee on the left", x=72, y=740)
    for name, x in (("coffee.png", 40), ("rocket.jpg", 330)):
        buffer = io.BytesIO()
        photo(name).save(buffer, "JPEG", quality=90)
        page.draw(builder.jpeg(buffer.getvalue()), x=x, y=400, w=240, h=160)  # both photos are 3:2
    outcome = image_ingest_bytes(data=builder.to_bytes(), original_name="launch.pdf",
                                 collection=Collection.objects.get(name="Photos"))
    document = Image.objects.get(pk=outcome.image_ids[0]).document
    images_before = Image.objects.count()
    UserFactory(username="ana", roles=["analyst"])
    browser = browser_page
    browser_login(browser, live_server.url, "ana")
    browser.goto(f"{live_server.url}/documents/{document.pk}/")
    preview = browser.locator("#page-preview-1 img")
    preview.scroll_into_view_if_needed()
    browser.wait_for_function("() => document.querySelector('#page-preview-1 img').complete")
    browser.click("#page-preview-1 ~ form .region-start")
    box = browser.locator("#page-preview-1").bounding_box()

    def at(x_points: float, y_points_from_top: float) -> tuple[float, float]:
        return box["x"] + box["width"] * x_points / 612, box["y"] + box["height"] * y_points_from_top / 792

    browser.mouse.move(*at(332, 234))  # the rocket's top left corner (330, 792 - 560 from the top)
    browser.mouse.down()
    browser.mouse.move(*at(450, 300), steps=3)
    browser.mouse.move(*at(568, 390), steps=3)
    browser.mouse.up()
    assert "% of the picture" in browser.locator("#page-preview-1 ~ form .region-hint").text_content()
    browser.click("#page-preview-1 ~ form .region-submit")
    browser.wait_for_url("**/search/?q=**")
    assert "Similar to a region of launch, p. 1" in browser.content()
    first = int(browser.locator(".result").first.get_attribute("data-image"))
    rockets = copied_library["rocket.jpg"] | {i for i in outcome.image_ids
                                             if Image.objects.get(pk=i).bbox and Image.objects.get(pk=i).bbox[0] > 300}
    assert first in rockets
    assert Image.objects.count() == images_before  # the region was searched, not imported

    # on the search page: the query's own region, the box moved with the keys, Enter searches
    coffee = next(iter(copied_library["coffee.png"]))
    browser.goto(f"{live_server.url}/search/?image={coffee}")
    browser.click(".region-search summary")
    browser.click(".region-search .region-start")
    browser.keyboard.press("Shift+ArrowLeft")  # a little narrower
    browser.keyboard.press("ArrowRight")  # and moved right
    hint = browser.locator(".region-search .region-hint").text_content()
    assert "48 % × 50 %" in hint, hint
    browser.keyboard.press("Enter")
    browser.wait_for_url("**/search/?q=**")
    assert "Similar to a region of coffee.png" in browser.content()
