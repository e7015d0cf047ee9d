"""An analyst reviewing near-duplicates in headless Chromium: the threshold, and marks from the keyboard."""

from __future__ import annotations

import pytest

from ranking.models import DuplicateMark
from ranking.services.duplicates import duplicate_scan_run_inline, duplicate_scan_start
from tests.conftest import CHROMIUM, browser_login
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


def test_an_analyst_moves_the_threshold_and_marks_copies_with_the_keyboard(
        browser_page, live_server, transactional_db, criterion, copied_library):
    scan = duplicate_scan_start(criterion=criterion, dispatch=False)
    duplicate_scan_run_inline(scan=scan)
    UserFactory(username="ana", roles=["analyst"])
    page = browser_page
    browser_login(page, live_server.url, "ana")
    page.click("nav >> text=Duplicates")
    page.wait_for_selector(".duplicate-group")
    assert "4 groups, 16 images in them." in page.content()
    assert page.locator("#distance-value").text_content() == "0.110"

    # the slider says its value while it moves and regroups when let go: at 0 only identical features group
    page.focus("#distance")
    page.keyboard.press("Home")
    page.wait_for_url("**distance=0**")
    assert page.locator("#distance-value").text_content() == "0.000"
    assert "4 groups" not in page.content()
    page.goto(f"{live_server.url}/duplicates/")

    member = page.locator(".duplicate-member").first
    reference, image = int(member.get_attribute("data-reference")), int(member.get_attribute("data-image"))
    member.locator("a").focus()
    page.keyboard.press("d")
    page.wait_for_selector("#marks-status:has-text('a different picture')")
    assert member.locator(".mark.not-relevant").get_attribute("aria-pressed") == "true"
    mark = DuplicateMark.objects.get()
    assert (mark.image_a_id, mark.image_b_id, mark.verdict) == (min(reference, image), max(reference, image), "distinct")

    page.keyboard.press("s")  # changes it
    page.wait_for_selector("#marks-status:has-text('the same picture')")
    assert DuplicateMark.objects.get().verdict == "duplicate"
    page.reload()
    again = page.locator(f".duplicate-member[data-image='{image}']")
    assert again.locator(".mark.relevant").get_attribute("aria-pressed") == "true"
    again.locator("a").focus()
    page.keyboard.press("0")  # clears it
    page.wait_for_selector("#marks-status:has-text('not marked')")
    assert not DuplicateMark.objects.exists()
