"""An admin runs the learning loop from the dashboard in headless Chromium, with a real Celery worker."""

from __future__ import annotations

import re

import pytest

from imagesearch.services.ingest import image_ingest_bytes
from ranking.models import ModelVersion
from ranking.services.criteria import criterion_default
from ranking.services.training import training_start, version_train
from tests import images
from tests.conftest import CHROMIUM, TINY_AUTOENCODER, browser_login
from tests.factories import CollectionFactory, UserFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)"),
]


def _results(page) -> list[str]:
    page.wait_for_selector(".result")
    return page.eval_on_selector_all(".result", "items => items.map(i => i.dataset.image)")


def test_an_admin_trains_refreshes_and_activates_a_version_and_search_changes(
        browser_page, live_server, celery_worker_process, settings):
    worker_media, worker_log = celery_worker_process
    settings.MEDIA_ROOT = worker_media  # the worker's files are the live server's
    settings.RANKING_MODELS_DIR = worker_media.parent / "models"
    collection = CollectionFactory(name="Dashboard library")
    ids = []
    for i in range(130):  # the dashboard's autoencoder wants at least 128
        ids += image_ingest_bytes(data=images.stripes(i % 2 == 0, seed=500 + i, size=24), original_name=f"s{i}.png",
                                  collection=collection).image_ids
    criterion = criterion_default()
    first = version_train(version_id=training_start(criterion=criterion, kind="autoencoder", dispatch=False,
                                                    hyperparameters=TINY_AUTOENCODER).pk, embed="inline")
    assert first.status == ModelVersion.Status.ACTIVE
    UserFactory(username="root", roles=["admin"])

    page = browser_page
    browser_login(page, live_server.url, "root")
    page.goto(f"{live_server.url}/search/?image={ids[0]}")
    before = _results(page)

    page.goto(f"{live_server.url}/dashboard/")
    page.click("text=Train a new autoencoder")
    page.wait_for_selector(".messages >> text=Training autoencoder version")
    second = ModelVersion.objects.exclude(pk=first.pk).get()
    job_row = f'#jobs tr[data-job="{second.training_job_id}"]'
    # the progress bar moves and the job finishes, without reloading the page
    page.wait_for_selector(f'{job_row}[data-status="succeeded"]', timeout=120_000)
    assert page.eval_on_selector(f"{job_row} progress", "bar => bar.value === bar.max && bar.max > 0")
    version_row = f"#version-{second.pk}"
    page.wait_for_selector(f'{version_row}[data-status="ready"]', timeout=120_000)  # embedded by the worker

    page.click(f"{version_row} >> text=Refresh embeddings")
    page.wait_for_selector(".messages >> text=Refreshing the embeddings")
    page.click(f"{version_row} >> text=Activate")
    page.wait_for_selector(f".messages >> text=Version {second.pk} is now active")
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.ACTIVE

    page.goto(f"{live_server.url}/search/?image={ids[0]}")
    after = _results(page)
    assert len(after) == len(before) and after != before  # ranked by the new model


def test_the_dashboard_asks_before_cancel_and_retire_shows_jobs_as_they_run_and_has_no_inline_script(
        browser_page, live_server, autoencoder, criterion):
    """Under a strict Content-Security-Policy, with the keyboard: Cancel and Retire ask in place first
    (Keep / Escape undo the question), a running training says what it does, an import's bar moves
    while its only chunk runs, and the criterion menu still switches criteria."""
    from datetime import timedelta

    from django.utils import timezone
    from playwright.sync_api import expect

    from imagesearch.models import IngestChunk, Job
    from imagesearch.services.jobs import job_create, job_log, job_report_part, job_start
    from ranking.services.criteria import criterion_create
    from tests.browser_csp import enforce_strict_csp

    ready = version_train(version_id=training_start(criterion=criterion, kind="autoencoder", dispatch=False,
                                                    hyperparameters={**TINY_AUTOENCODER, "seed": 4}).pk,
                          embed="inline")
    assert ready.status == ModelVersion.Status.READY
    other = criterion_create(name="Texture")
    training = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                              dispatch=False)
    train_job = training.training_job_id
    importing = job_create(kind="import_images", total=54, message="54 files to import into Default")
    chunk = IngestChunk.objects.create(job=importing, index=0, items=[{}] * 54)
    Job.objects.filter(pk=importing.pk).update(status="running", started_at=timezone.now() - timedelta(seconds=5))
    UserFactory(username="root", roles=["admin"])

    page = browser_page
    refused = enforce_strict_csp(page, live_server.url)
    browser_login(page, live_server.url, "root")
    page.goto(f"{live_server.url}/dashboard/?criterion={criterion.pk}")
    train_row, import_row = (f'#jobs tr[data-job="{pk}"]' for pk in (train_job, importing.pk))
    assert page.text_content(f"{train_row} .latest").strip() == "Waiting for a worker."  # queued: true

    # the worker takes the training: the row says so at once, before any epoch has ended
    job_start(job_id=train_job)
    job_log(job_id=train_job, line="Started: preparing the training data.", as_message=True)
    page.wait_for_selector(f'{train_row}[data-status="running"]')
    expect(page.locator(f"{train_row} .latest")).to_have_text(re.compile(r"Started: preparing the training data\.$"))
    assert page.text_content(f"{train_row} .eta") == "estimating…"

    # the import's single chunk has read 20 of its 54 files: the bar shows it before the chunk commits
    job_report_part(job_id=importing.pk, part="chunk 0", done=20,
                    pending=IngestChunk.objects.filter(pk=chunk.pk, status="pending"))
    expect(page.locator(f"{import_row} progress")).to_have_js_property("value", 20)  # (no eval under this CSP)
    assert page.eval_on_selector(f"{import_row} progress", "bar => bar.max") == 54
    assert "20 / 54 (37" in page.text_content(f"{import_row} .count")

    # Cancel asks first; "Keep it running" has the focus, so a second Enter does nothing
    page.focus(f"{train_row} .cancel-job")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{train_row} .confirm >> text=Cancel job #{train_job}?")
    assert page.evaluate("document.activeElement.textContent") == "Keep it running"
    page.keyboard.press("Enter")
    assert page.is_visible(f"{train_row} .cancel-job") and page.evaluate(
        "document.activeElement.classList.contains('cancel-job')")
    assert Job.objects.get(pk=train_job).status == "running"
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")  # to "Cancel the job"
    page.keyboard.press("Enter")
    page.wait_for_selector(f'{train_row}[data-status="cancelled"]')
    assert Job.objects.get(pk=train_job).status == "cancelled"
    assert page.evaluate("document.activeElement.classList.contains('status')")  # still on its row
    page.wait_for_selector(f'#version-{training.pk}[data-status="failed"]')  # the versions table was refreshed
    assert "can be undone" in page.text_content("#switch-note")  # activate / roll back: one click, said so

    # Retire asks first too; Escape takes the question back; its Yes sends the form's retire action
    posted = []
    # the form's request is noted and answered "204 No Content" (the page stays): no retire task is queued
    page.route(f"{live_server.url}/dashboard/action/", lambda route: (posted.append(route.request.post_data),
                                                                     route.fulfill(status=204)))
    retire = f"#version-{ready.pk} button[value=retire]"
    page.click(retire)
    page.wait_for_selector(f"#version-{ready.pk} .confirm >> text=cannot be undone")
    page.keyboard.press("Escape")
    assert page.is_visible(retire) and not page.is_visible(f"#version-{ready.pk} .confirm")
    assert not posted and ModelVersion.objects.get(pk=ready.pk).status == ModelVersion.Status.READY
    page.click(retire)
    page.click(f"#version-{ready.pk} .confirm-yes")
    for _ in range(50):
        if posted:
            break
        page.wait_for_timeout(100)
    assert len(posted) == 1 and "action=retire" in posted[0] and f"version={ready.pk}" in posted[0]
    page.unroute(f"{live_server.url}/dashboard/action/")

    # the criterion menu has no inline handler, and still shows the chosen criterion
    page.goto(f"{live_server.url}/dashboard/?criterion={criterion.pk}")
    page.select_option("#criterion-select", str(other.pk))
    page.wait_for_url(f"**/dashboard/?criterion={other.pk}")
    assert "Dashboard · Texture" in page.text_content("h1")
    assert page.eval_on_selector_all("[onchange], [onclick], [style], script:not([src])", "found => found.length") == 0
    assert refused == []
    page.unroute_all(behavior="ignoreErrors")
