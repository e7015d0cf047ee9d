"""A labeler at the keyboard, in headless Chromium, against a live server and the real database."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labeling.models import TripletJudgment
from tests.factories import UserFactory

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous and made between browser steps, never from inside the loop.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            browser.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_a_labeler_answers_with_the_keyboard_and_undoes_one(browser_page, live_server, transactional_db, criterion,
                                                            stripes_library, settings):
    settings.LABELING_GOLD_RATE = 0
    labeler = UserFactory(username="lena", roles=["labeler"])
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "lena")
    page.fill("input[name=password]", "pw")
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{live_server.url}/label/")

    triplet = page.locator("#triplet")

    def shown() -> int:
        try:
            page.wait_for_selector("#triplet[aria-busy=false] #query-frame img")
        except Exception:
            raise AssertionError(f"no triplet on screen; the page says: {page.locator('main').inner_text()!r}")
        return int(triplet.get_attribute("data-triplet"))

    answered = {}
    for key, answer in (("ArrowLeft", "a"), ("2", "b"), ("ArrowDown", "unsure"), ("ArrowRight", "b")):
        current = shown()
        page.keyboard.press(key)
        page.wait_for_function(f"document.getElementById('triplet').dataset.triplet !== '{current}'")
        answered[current] = answer
    last = current
    page.keyboard.press("u")  # undo the last answer: its triplet comes back
    page.wait_for_function(f"document.getElementById('triplet').dataset.triplet === '{last}'")
    page.keyboard.press("1")  # and is answered again, differently
    answered[last] = "a"
    skipped = shown()
    page.keyboard.press(" ")
    page.wait_for_function(f"document.getElementById('triplet').dataset.triplet !== '{skipped}'")

    def stored():
        return dict(TripletJudgment.objects.filter(user=labeler).values_list("triplet_id", "answer"))

    _wait_for(lambda: stored() == answered)
    judgments = TripletJudgment.objects.filter(user=labeler)
    assert all(j.source == "labeling" and j.seconds is not None and j.seconds >= 0 for j in judgments)
    assert skipped not in stored()
    page.wait_for_function("document.getElementById('stat-today').textContent.trim() === '4'")
    assert page.locator("#stat-total").inner_text() == "4"
    assert not page.locator("#status.error").count()

    # a phone: tapping a candidate answers too
    page.set_viewport_size({"width": 390, "height": 844})
    tapped = shown()
    page.locator("#choose-b").click()
    answered[tapped] = "b"
    _wait_for(lambda: stored() == answered)
