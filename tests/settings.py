"""Test settings: the real database and broker, with test-only file locations.

Stored files and the embedded broker's queue live apart from a running app's, so the
suite never touches a real library even on a machine where ``serve`` is running.
"""

import os

from imagesearch.settings import *  # noqa: F403
from imagesearch.settings import CELERY_BROKER_URL, DATA_DIR

MEDIA_ROOT = Path(os.environ.get("IMAGESEARCH_MEDIA_DIR", DATA_DIR / "test-media"))  # noqa: F405
if CELERY_BROKER_URL.startswith("filesystem://"):
    TEST_BROKER_DIR = DATA_DIR / "test-broker"
    for sub in ("queue", "control", "processed"):
        (TEST_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(TEST_BROKER_DIR / "queue"),
        "data_folder_out": str(TEST_BROKER_DIR / "queue"),
        "control_folder": str(TEST_BROKER_DIR / "control"),
        "processed_folder": str(TEST_BROKER_DIR / "processed"),
        "polling_interval": 0.05,
    }
# Hashing passwords slowly is the point in production and a waste in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
