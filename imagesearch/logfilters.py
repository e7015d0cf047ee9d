"""Logging filters for the settings' LOGGING."""

from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """A refused or missing page (4xx) is logged as one line, without Django's traceback.

    Django logs a 403 from PermissionDenied with its traceback at WARNING: in the server's log
    it reads like a failure and hides the real ones. 5xx keep theirs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
