"""The application's one error type for a refusal: what a person asked that cannot be done, and why."""

from __future__ import annotations


class AppError(ValueError):
    """A refusal with its reason, in words for the person who asked (the API answers it with a 400).

    ``field``: the input it concerns, if one (the API puts the message under that name), else None.
    API views do not catch it: ``imagesearch.api.errors.api_exception_handler`` answers it. Any other
    exception is a bug, and stays one: a logged 500, never a 400. It is a ValueError, so that callers
    that treat bad values as such (a line of an import file, a command's argument) still do.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
