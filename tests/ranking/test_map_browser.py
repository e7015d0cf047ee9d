"""The map in headless Chromium: hover, click to search, a box selection made a labeling focus, and labeling in it."""

from __future__ import annotations

import pytest

from labeling.models import LabelingFocus, TripletJudgment
from ranking.models import MapPoint
from ranking.services.maps import map_compute, map_start
from tests.conftest import CHROMIUM, browser_login, wait_for
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


def _on_screen(page, x: float, y: float) -> tuple[float, float]:
    """Where map.js draws the map point (x, y) of the whole-map view: the map's unit square fitted to 94 % of the
    canvas's shorter side, centred."""
    box = page.locator("#map-canvas").bounding_box()
    scale = min(box["width"], box["height"]) * 0.94
    return (box["x"] + (box["width"] - scale) / 2 + x * scale, box["y"] + (box["height"] - scale) / 2 + y * scale)


def test_an_admin_selects_part_of_the_map_makes_it_a_focus_and_labels_within_it(
        browser_page, live_server, transactional_db, criterion, autoencoder, settings):
    settings.LABELING_GOLD_RATE = 0
    embedding_map = map_start(version=autoencoder, dispatch=False)
    map_compute(map_id=embedding_map.pk)
    points = list(MapPoint.objects.filter(map=embedding_map))
    UserFactory(username="ada", roles=["admin"])
    page = browser_page
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    browser_login(page, live_server.url, "ada")
    page.click("nav >> text=Map")
    page.wait_for_selector("#map-caption:has-text('16 images in view')")
    assert page.locator("#map-legend li").count() == embedding_map.clusters.count()

    # hovering a point shows its image
    target = points[0]
    page.mouse.move(*_on_screen(page, target.x, target.y))
    page.wait_for_selector("#map-hover img")
    assert not page.locator("#map-hover").is_hidden()

    # a box around the left half, drawn with the keyboard's B tool
    page.focus("#map-canvas")
    page.keyboard.press("b")
    assert page.locator("[data-tool=box]").get_attribute("aria-pressed") == "true"
    page.mouse.move(*_on_screen(page, -0.02, -0.02))
    page.mouse.down()
    page.mouse.move(*_on_screen(page, 0.25, 0.5), steps=4)
    page.mouse.move(*_on_screen(page, 0.5, 1.02), steps=4)
    page.mouse.up()
    inside = {p.image_id for p in points if p.x <= 0.5}
    page.wait_for_selector(f"#selection-count:has-text('{len(inside)} images inside the selection')")
    assert page.locator("#selection-preview img").count() == len(inside)
    page.fill("#selection-name", "West side")
    page.select_option("#selection-action", "focus")
    page.click("#selection-form button[type=submit]")
    page.wait_for_selector("#selection-status:has-text('Labelers can now choose the focus')")
    focus = LabelingFocus.objects.get(name="West side")
    assert set(focus.members.values_list("image_id", flat=True)) == inside

    # the focus is what the labeling page works in
    page.click("#selection-status a")
    page.wait_for_selector("#focus-line:has-text('Focus: West side')")
    for _ in range(3):
        page.wait_for_selector("#triplet[aria-busy=false] #query-frame img")
        current = page.locator("#triplet").get_attribute("data-triplet")
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(f"() => document.getElementById('triplet').dataset.triplet !== '{current}'")
    wait_for(lambda: TripletJudgment.objects.count() == 3, what="the three answers to be stored")
    judged = TripletJudgment.objects.select_related("triplet")
    for judgment in judged:
        t = judgment.triplet
        assert {t.query_id, t.candidate_a_id, t.candidate_b_id} <= inside

    # back on the map, a click on a point searches with its image
    page.goto(f"{live_server.url}/map/")
    page.wait_for_selector("#map-caption:has-text('16 images in view')")
    page.mouse.click(*_on_screen(page, target.x, target.y))
    page.wait_for_url(f"**image={target.image_id}**")
    assert errors == []
