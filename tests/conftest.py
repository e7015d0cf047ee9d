from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

from imagesearch.services.ingest import image_ingest_bytes
from tests import images, photos
from tests.factories import CollectionFactory


def pytest_configure(config) -> None:
    """Without DATABASE_URL the session starts (or attaches to) the embedded PostgreSQL, as manage.py does
    (importing the settings starts nothing); without CELERY_BROKER_URL the suite runs on its own embedded
    Redis, as `serve` does. Both stop at the end (the database when its last process exits)."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        # test processes side by side (scripts/test): one torch thread each, or their thread pools
        # contend for the cores and spin (a 2 s training test took 27 s beside another process)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    from django.conf import settings

    from imagesearch.embedded_db import embedded_postgres_for_this_process

    embedded_postgres_for_this_process()
    if settings.EMBEDDED_REDIS:
        from imagesearch.embedded_redis import redis_for_this_process

        redis_for_this_process(settings.EMBEDDED_REDIS_DIR)


def pytest_collection_modifyitems(config, items) -> None:
    """The broker tests go first: their longest one is 30 s of waiting (the dashboard polls the workers
    while an import runs), which costs nothing while the other test processes work, but at the end
    of the run it kept one process busy after the others had finished. (Dealing all the slow tests out
    first, a share to each process, was slower: 117-129 s against 101-107 s, measured back to back.)"""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/test_broker.py::"))


@pytest.fixture(scope="session", autouse=True)
def fresh_cache():
    """Throttles and "worker missing since" marks of an earlier run must not leak into this one."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test stores its files in a fresh folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RANKING_MODELS_DIR = tmp_path / "models"
    settings.SEARCH_QUERY_DIR = tmp_path / "queries"
    settings.DOCUMENT_UPLOAD_DIR = tmp_path / "uploads"
    return settings.MEDIA_ROOT


def _url_with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def worker_to_kill(settings, log_path: Path, name: str):
    """A Celery worker process of its own on a queue of its own (``name``-PID), for a test that kills it:
    yields (queue, hostname) once it answers, and SIGKILLs its whole process group on leaving, as when
    its machine dies. It uses the test database and the test's media and models folders."""
    import signal
    import subprocess
    import sys

    from django.db import connection

    from imagesearch.celery import app

    queue = f"{name}-{os.getpid()}"
    hostname = f"{queue}@test"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": _url_with_database(settings.DATABASE_URL, connection.settings_dict["NAME"]),
           "IMAGESEARCH_MEDIA_DIR": str(settings.MEDIA_ROOT), "RANKING_MODELS_DIR": str(settings.RANKING_MODELS_DIR)}
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--loglevel", "INFO", "--concurrency", "1",
             "--queues", queue, "--hostname", hostname],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: app.control.ping(destination=[hostname], timeout=0.5), what="the worker to start")
        yield queue, hostname
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, tmp_path_factory):
    """A real Celery worker process on the configured broker, using the test database.

    Yields (media_root, log_path). Tests that use it need ``transactional_db`` so the
    worker sees their committed rows.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    from django.conf import settings
    from django.db import connection

    from imagesearch.celery import app

    app.control.purge()  # messages left by an earlier, interrupted run
    base = tmp_path_factory.mktemp("worker")
    log_path = base / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _url_with_database(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        "IMAGESEARCH_MEDIA_DIR": str(base / "media"),
        "RANKING_MODELS_DIR": str(base / "models"),
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--queues", "default,gpu", "--hostname", f"test-{os.getpid()}@%h"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start:\n{log_path.read_text()}")
        yield base / "media", log_path
    finally:
        # a cold shutdown (SIGQUIT): at the end of the session no task is left to finish, and the warm
        # one (SIGTERM) took seconds to close the pool on a loaded machine, at the end of the run
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


# Small, fast networks: the tests check behaviour, not accuracy.
TINY_AUTOENCODER = {"epochs": 2, "batch_size": 8, "width": 8, "embedding_dim": 8}
# the default path: a head on the frozen pretrained backbone's cached features
TINY_RANKING = {"epochs": 3, "batch_size": 8, "embedding_dim": 16, "hidden_dim": 16, "shallow_channels": 8,
                "min_train_triplets": 4, "val_fraction": 0.25}
# the whole network trained on the images, from random weights, with self-supervised pretraining first
TINY_RANKING_FULL = {**TINY_RANKING, "backbone_mode": "full", "backbone": "resnet_tiny", "weights": None,
                     "pretrain_epochs": 1, "pretrain_batch_size": 16}


@pytest.fixture
def stripes_library(db):
    """16 images in two classes (vertical / horizontal stripes), labelled "v" and "h", in two collections."""
    ids = {"v": [], "h": []}
    collections = [CollectionFactory(name="North"), CollectionFactory(name="South")]
    for i in range(16):
        label = "v" if i % 2 == 0 else "h"
        outcome = image_ingest_bytes(data=images.stripes(label == "v", seed=i), original_name=f"{label}{i}.png",
                                     collection=collections[i % 4 // 2], label=label)
        ids[label] += outcome.image_ids
    return ids


@pytest.fixture
def copied_library(db, criterion):
    """Four copies each of four photos (tests.photos.copies), two photos once each, and the pretrained model
    active; returns {photo name: its images' ids}."""
    from imagesearch.services.library import collection_get_or_create
    from ranking.services.training import training_start, version_train

    families: dict[str, set[int]] = {}
    collection = collection_get_or_create(name="Photos")
    for n, name in enumerate(photos.PHOTOS):
        for kind, data in photos.library_copies(name, with_copies=n < 4):
            outcome = image_ingest_bytes(data=data, original_name=f"{name}-{kind}.png", collection=collection)
            families.setdefault(name, set()).update(outcome.image_ids)
    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version_train(version_id=version.pk, embed="inline")
    return families


@pytest.fixture
def criterion(db):
    from ranking.services.criteria import criterion_default

    return criterion_default()


@pytest.fixture(scope="session")
def trained_autoencoder_network():
    """The baseline autoencoder's network, trained once per test process: every test's stripes library
    holds the same pixels and the training is seeded, so it would come out the same in each test."""
    return {}


@pytest.fixture
def autoencoder(stripes_library, criterion, trained_autoencoder_network):
    """A trained, embedded and (as the first version) active autoencoder: a version of its own in each
    test (its row, weights file, job, embeddings and index), its network trained once per test process."""
    import copy

    from ranking.services import training

    version = training.training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                                      dispatch=False)
    real_train = training._train_autoencoder

    def trained_once(version):
        if "network" not in trained_autoencoder_network:
            trained_autoencoder_network["network"] = real_train(version)
        model, metrics = trained_autoencoder_network["network"]
        return copy.deepcopy(model), copy.deepcopy(metrics)

    with pytest.MonkeyPatch.context() as patch:  # this version only: a test's own trainings train
        patch.setattr(training, "_train_autoencoder", trained_once)
        return training.version_train(version_id=version.pk, embed="inline")


@pytest.fixture(scope="session")
def live_server(django_db_setup, live_server):
    """pytest-django's live server, stopped before the test database is dropped (its thread holds a
    connection that would otherwise keep the database from being dropped)."""
    return live_server


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; scripts/test installs it


@pytest.fixture
def browser_page():
    """A page in headless Chromium, driven by Playwright."""
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




def wait_for(condition, timeout: float = 120, what: str = "condition"):
    """Poll ``condition`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def browser_login(page, base_url: str, username: str, password: str = "pw") -> None:
    """Sign in through the login page, as a user does."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state()
