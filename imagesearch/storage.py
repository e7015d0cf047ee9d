"""Content-addressed files under MEDIA_ROOT: a file's name is its SHA-256.

Files are written to a temporary name and renamed into place, so a reader never sees
half a file; a name that exists already holds the same bytes and is not rewritten.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings

TEMP_PREFIX = ".tmp-"


def original_name(sha256: str, extension: str) -> str:
    return f"originals/{sha256[:2]}/{sha256[2:4]}/{sha256}{extension}"


def thumbnail_name(sha256: str) -> str:
    return f"thumbs/{sha256[:2]}/{sha256[2:4]}/{sha256}.webp"


def media_path(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / name


def store_bytes(name: str, data: bytes) -> bool:
    """Write ``data`` at ``name`` unless it exists; True when this call created it."""
    path = media_path(name)
    if path.exists():
        return False
    temp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    try:
        try:
            fh = open(temp, "wb")
        except FileNotFoundError:  # the folder's first file (checking first would cost every file a call)
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(temp, "wb")
        with fh:
            fh.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return True


def remove_files(names: list[str]) -> None:
    for name in names:
        if name:
            media_path(name).unlink(missing_ok=True)
