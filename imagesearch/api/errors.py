"""The API's one exception handler: an application refusal (``AppError``) is a 400 with its reason."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.views import exception_handler

from imagesearch.errors import AppError


def api_exception_handler(exc, context):
    """DRF's handler, with ``AppError`` answered as a 400: ``{field: [message]}`` when it concerns one
    input, else ``{"detail": message}``. Anything DRF does not know stays unhandled: a logged 500."""
    if isinstance(exc, AppError):
        exc = ValidationError({exc.field: [str(exc)]} if exc.field else {"detail": str(exc)})
    return exception_handler(exc, context)
