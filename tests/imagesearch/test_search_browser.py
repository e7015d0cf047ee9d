"""An analyst searching by example in headless Chromium, against a live server and the real database."""

from __future__ import annotations

import pytest

from imagesearch.models import Image
from labeling.models import TripletJudgment
from tests import images
from tests.conftest import CHROMIUM, browser_login
from tests.factories import UserFactory

def _until(page, expression: str, timeout: float = 20) -> None:
    """Wait until ``expression`` is true in the page. (``page.wait_for_function`` evaluates its text
    with eval(), which the app's Content-Security-Policy refuses; ``page.evaluate`` is not eval.)"""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(100)


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


def test_an_analyst_uploads_a_query_follows_a_result_to_its_document_and_gives_feedback(
        browser_page, live_server, transactional_db, autoencoder, stripes_library, tmp_path):
    from imagesearch.services.ingest import image_ingest_bytes
    from ranking.services.embeddings import embeddings_add_new_images

    collection = Image.objects.get(pk=stripes_library["v"][0]).collection
    scan = image_ingest_bytes(data=images.multipage_tiff(pages=3), original_name="survey.tif", collection=collection)
    embeddings_add_new_images(image_ids=scan.image_ids)
    UserFactory(username="ana", roles=["analyst"])
    query_file = tmp_path / "query.png"
    query_file.write_bytes(images.stripes(True, seed=31337))

    page = browser_page
    browser_login(page, live_server.url, "ana")
    page.wait_for_url(f"{live_server.url}/images/")
    page.click("nav >> text=Search")
    page.wait_for_load_state()  # search.js listens for the file before one is chosen

    before = Image.objects.count()
    page.set_input_files("#query-file", str(query_file))  # submits on change, as a drop or a paste does
    page.wait_for_selector(".result img")
    assert "?q=" in page.url
    results = page.locator(".result")
    assert results.count() == 19  # the whole library: 16 stripes + 3 scanned pages (the upload is not in it)
    # the thumbnails really load (the media view answers the browser)
    _until(page, "[...document.querySelectorAll('.result img')].slice(0, 6)"
                 ".every(img => img.complete && img.naturalWidth > 0)")
    assert Image.objects.count() == before  # searching kept nothing

    page.click("text=Add to library")
    page.wait_for_selector(".result .mark")
    assert Image.objects.count() == before + 1
    query_id = int(page.url.split("image=")[1].split("&")[0])

    # keyboard: focus the first result, mark it relevant, move right, mark that one not relevant
    first, second = (int(results.nth(i).get_attribute("data-image")) for i in (0, 1))
    results.nth(0).locator(".result-link").focus()
    page.keyboard.press("r")
    page.wait_for_selector(f'.result[data-image="{first}"] .mark.relevant[aria-pressed=true]')
    page.keyboard.press("ArrowRight")
    page.keyboard.press("n")
    _until(page, "document.getElementById('feedback-status').textContent.includes('1 judgment')")
    judgment = TripletJudgment.objects.get(user__username="ana")
    assert judgment.source == TripletJudgment.Source.SEARCH_FEEDBACK
    triplet = judgment.triplet
    assert triplet.query_id == query_id
    assert {"a": triplet.candidate_a_id, "b": triplet.candidate_b_id}[judgment.answer] == first
    assert {triplet.candidate_a_id, triplet.candidate_b_id} == {first, second}

    page.reload()  # marks are kept
    page.wait_for_selector(f'.result[data-image="{first}"][data-mark="relevant"]')

    link = page.locator(".result .document-link").first
    page_number = int(link.get_attribute("href").split("page=")[1].split("#")[0])
    link.click()
    page.wait_for_url(f"**/documents/{scan.document_id}/**")
    assert page.locator(f"#page-{page_number}.current").count() == 1


def test_the_first_result_takes_the_focus_and_r_or_n_without_one_says_what_to_do(
        browser_page, live_server, transactional_db, autoencoder, stripes_library):
    """A new analyst's first keys: results arrive with the first one focused, so R marks it at once;
    R or N with no result focused marks nothing and says, politely and visibly, what to do. The page
    runs under a strict Content-Security-Policy (no inline script or style), on a wide and a narrow screen."""
    from playwright.sync_api import expect

    from tests.browser_csp import enforce_strict_csp

    UserFactory(username="ana", roles=["analyst"])
    query = stripes_library["v"][0]
    page = browser_page
    refused = enforce_strict_csp(page, live_server.url)
    browser_login(page, live_server.url, "ana")
    page.goto(f"{live_server.url}/search/?image={query}")
    page.wait_for_selector(".result .mark")
    first = page.get_attribute(".result >> nth=0", "data-image")
    expect(page.locator(".result >> nth=0").locator(".result-link")).to_be_focused()

    page.keyboard.press("r")  # no Tab needed
    expect(page.locator(f'.result[data-image="{first}"] .mark.relevant')).to_have_attribute("aria-pressed", "true")
    status = page.locator("#feedback-status")
    expect(status).to_contain_text("1 relevant, 0 not relevant")

    page.click("h1")  # the focus leaves the results
    page.keyboard.press("n")
    expect(status).to_have_text("No result has the focus: use a result's ✓ or ✗, or Tab to a result "
                                "(the arrow keys then move between them).")
    assert status.get_attribute("role") == "status" and status.is_visible()
    assert page.locator('.result[data-mark="not_relevant"]').count() == 0  # nothing was marked

    page.set_viewport_size({"width": 400, "height": 800})  # the key help is hidden there; the answer is not
    page.reload()
    page.wait_for_selector(".result .mark")
    assert not page.is_visible("#feedback-help")
    page.click("h1")
    page.keyboard.press("r")
    expect(status).to_contain_text("No result has the focus")
    assert status.is_visible()
    assert page.eval_on_selector_all("[onchange], [onclick], [style], script:not([src])", "found => found.length") == 0
    assert refused == []
    page.unroute_all(behavior="ignoreErrors")
