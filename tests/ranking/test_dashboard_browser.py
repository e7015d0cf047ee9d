"""An admin runs the learning loop from the dashboard in headless Chromium, with a real Celery worker."""

from __future__ import annotations

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
