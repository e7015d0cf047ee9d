"""A labeler at the keyboard, in headless Chromium, against a live server and the real database."""

from __future__ import annotations

import pytest

from labeling.models import TripletJudgment
from tests.conftest import CHROMIUM, browser_login, wait_for
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


def test_a_labeler_answers_with_the_keyboard_and_undoes_one(browser_page, live_server, transactional_db, criterion,
                                                            stripes_library, settings):
    settings.LABELING_GOLD_RATE = 0
    labeler = UserFactory(username="lena", roles=["labeler"])
    page = browser_page
    browser_login(page, live_server.url, "lena")
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
        page.wait_for_function(f"() => document.getElementById('triplet').dataset.triplet !== '{current}'")
        answered[current] = answer
    last = current
    page.keyboard.press("u")  # undo the last answer: its triplet comes back
    page.wait_for_function(f"() => document.getElementById('triplet').dataset.triplet === '{last}'")
    assert page.text_content("#status").startswith("Answer undone")
    page.keyboard.press("1")  # and is answered again, differently
    answered[last] = "a"
    page.wait_for_function("() => document.getElementById('status').textContent === ''")  # the note went with it
    skipped = shown()
    page.keyboard.press(" ")
    page.wait_for_function(f"() => document.getElementById('triplet').dataset.triplet !== '{skipped}'")

    def stored():
        return dict(TripletJudgment.objects.filter(user=labeler).values_list("triplet_id", "answer"))

    wait_for(lambda: stored() == answered)
    judgments = TripletJudgment.objects.filter(user=labeler)
    assert all(j.source == "labeling" and j.seconds is not None and j.seconds >= 0 for j in judgments)
    assert skipped not in stored()
    # the two counters are painted one after the other
    page.wait_for_function("() => document.getElementById('stat-today').textContent.trim() === '4'")
    page.wait_for_function("() => document.getElementById('stat-total').textContent.trim() === '4'")
    assert not page.locator("#status.error").count()

    # a phone: tapping a candidate answers too
    page.set_viewport_size({"width": 390, "height": 844})
    tapped = shown()
    page.locator("#choose-b").click()
    answered[tapped] = "b"
    wait_for(lambda: stored() == answered)


def test_a_key_pressed_while_the_next_triplet_loads_is_not_counted_and_the_labeler_is_told(
        browser_page, live_server, transactional_db, criterion, stripes_library, settings):
    """A fast labeler outran the prefetched triplets: the key pressed on "Loading…" was dropped silently."""
    settings.LABELING_GOLD_RATE = 0
    labeler = UserFactory(username="fast", roles=["labeler"])
    page = browser_page
    held, holding = [], [True]

    def slow(route) -> None:  # the first triplets are slow to come
        if holding[0]:
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/labeling/next/", slow)
    browser_login(page, live_server.url, "fast")
    page.wait_for_url(f"{live_server.url}/label/")
    wait_for(lambda: held or page.wait_for_timeout(100), timeout=20, what="the page to ask for triplets")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('was not counted')")

    holding[0] = False
    for route in held:
        route.continue_()
    page.wait_for_selector("#triplet[aria-busy=false] #query-frame img")
    page.wait_for_function("() => !document.getElementById('status').textContent.includes('was not counted')")
    page.keyboard.press("ArrowLeft")
    wait_for(lambda: TripletJudgment.objects.filter(user=labeler).count() == 1, what="the one answer counted")
    page.wait_for_timeout(500)
    assert TripletJudgment.objects.filter(user=labeler).count() == 1


def test_a_labeler_with_no_triplet_yet_gets_one_seconds_after_it_is_made(
        browser_page, live_server, transactional_db, criterion, settings):
    """On a fresh install the first refill committed half a second after the page asked, and the page waited 15 s."""
    from labeling.services.triplets import triplet_get_or_create
    from tests import images
    from tests.factories import make_image

    settings.LABELING_GOLD_RATE = 0
    two = [make_image(data=images.stripes(i % 2 == 0, seed=i), name=f"s{i}.png").pk for i in range(2)]  # no triplet yet
    UserFactory(username="nina", roles=["labeler"])
    page = browser_page
    browser_login(page, live_server.url, "nina")
    page.wait_for_url(f"{live_server.url}/label/")
    try:
        page.wait_for_function("() => document.getElementById('status').textContent.includes('No triplets to label right now')")
    except Exception:
        raise AssertionError(page.locator("main").inner_text()) from None
    third = make_image(data=images.stripes(True, seed=7), name="s7.png").pk
    triplet_get_or_create(criterion=criterion, query_id=two[0], candidate_ids=(third, two[1]))
    # the re-checks come after 1, 2, 4 … s: a triplet is on screen well before the old 15 s
    page.wait_for_selector("#triplet[aria-busy=false] #query-frame img", timeout=8000)
