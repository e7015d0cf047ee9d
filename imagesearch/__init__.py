"""The Django project (settings, urls, Celery app) and the image-library app."""

from imagesearch.celery import app as celery_app

__all__ = ["celery_app"]
