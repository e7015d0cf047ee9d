"""Query-string and form parameters, parsed the same way by every page and API view.

A hand-edited or hostile address must be answered 400 with the reason, never 500:
``int("²")`` raises although ``"²".isdigit()`` is true, PostgreSQL refuses text
holding a NUL byte, and a number past the column's range fails in the database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from django.core.exceptions import BadRequest
from rest_framework.exceptions import ValidationError

# PostgreSQL's bigint (the ids, BigAutoField): larger values can name no row
MAX_ID = 2**63 - 1
# PostgreSQL's integer (counters such as auto_retrain_after)
MAX_INTEGER = 2**31 - 1
TEXT_MAX_LENGTH = 500
NOT_A_NUMBER = "{name}: give a whole number (digits 0-9 only)."
NOT_A_DECIMAL = "{name}: give a number such as 0.05."
OUT_OF_RANGE = "{name}: give a number from {low:,} to {high:,}."
NUL_IN_TEXT = "{name}: the text holds a NUL character."
TOO_LONG = "{name}: at most {limit:,} characters."


class InvalidParameter(BadRequest, ValidationError):
    """A parameter that cannot mean anything; the message says which and why.

    Both a ``BadRequest``, so a page is answered 400 by Django, and a DRF
    ``ValidationError``, so an API view is answered 400 in JSON, with no handler
    to register in either.
    """

    def __init__(self, name: str, message: str):
        ValidationError.__init__(self, {name: [message]})
        self.message = message

    def __str__(self) -> str:
        return self.message


def int_param(
    params: Mapping[str, str], name: str, *, default: int | None = None, min_value: int = 0,
    max_value: int = MAX_ID, label: str = "",
) -> int | None:
    """``params[name]`` as an int from ASCII digits only; ``default`` when absent or empty.

    ``label``: the field as the page calls it, for the message (default: ``name``)."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidParameter(name, NOT_A_NUMBER.format(name=label or name))
    # past 20 digits it is out of range anyway (and int() of thousands of digits raises)
    digits = raw.lstrip("0") or "0"
    if len(digits) > 20 or not min_value <= int(digits) <= max_value:
        raise InvalidParameter(name, OUT_OF_RANGE.format(name=label or name, low=min_value, high=max_value))
    return int(digits)


def float_param(
    params: Mapping[str, str], name: str, *, default: float | None = None, min_value: float = 0.0,
    max_value: float = 1.0, label: str = "",
) -> float | None:
    """``params[name]`` as a finite float written in ASCII (``0.05``, ``5e-2``); ``default`` when absent."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw) if raw.isascii() and len(raw) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidParameter(name, NOT_A_DECIMAL.format(name=label or name))
    if not min_value <= value <= max_value:
        raise InvalidParameter(name, OUT_OF_RANGE.format(name=label or name, low=min_value, high=max_value))
    return value


def text_param(
    params: Mapping[str, str], name: str, *, default: str = "", max_length: int = TEXT_MAX_LENGTH, label: str = "",
) -> str:
    """``params[name]`` stripped, refused when it holds a NUL or is longer than ``max_length``."""
    value = (params.get(name) or default).strip()
    if "\x00" in value:
        raise InvalidParameter(name, NUL_IN_TEXT.format(name=label or name))
    if len(value) > max_length:
        raise InvalidParameter(name, TOO_LONG.format(name=label or name, limit=max_length))
    return value
