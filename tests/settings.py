"""Test settings: the real database and broker, with test-only file locations.

Stored files and the embedded broker's queue live apart from a running app's, so the
suite never touches a real library even on a machine where ``serve`` is running.
"""

import os

from imagesearch.settings import *  # noqa: F403
from imagesearch.settings import CELERY_BROKER_URL, DATA_DIR, filesystem_broker_options

MEDIA_ROOT = Path(os.environ.get("IMAGESEARCH_MEDIA_DIR", DATA_DIR / "test-media"))  # noqa: F405
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(DATA_DIR / "test-broker")
# Hashing passwords slowly is the point in production and a waste in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
