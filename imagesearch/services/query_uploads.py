"""Query images for search: validating an upload, keeping it aside, adding it to the library.

An uploaded query is not part of the library. It is checked like an import
(from its bytes, with the SEARCH_QUERY_* limits), then kept in
``SEARCH_QUERY_DIR`` under its SHA-256 (the query's *token*) for
``SEARCH_QUERY_KEEP_HOURS``, so that more results, another model version or
"add to library" work without a second upload. An upload whose bytes are
already in the library is that library image.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from imagesearch.imaging import ImageRejected, decode_image, open_for_display
from imagesearch.models import Collection, Image
from imagesearch.services.import_files import DUPLICATE, IMPORTED
from imagesearch.services.ingest import image_ingest_bytes

QUERY_TOO_LARGE = "query image too large: {size:,} bytes exceeds the limit of {limit:,} (SEARCH_QUERY_MAX_BYTES)"
QUERY_ONE_PICTURE = "a query is one picture: this file has several pages; search with one of them"
QUERY_EXPIRED = "This query image is no longer kept (after {hours} hours); upload it again."
_TOKEN = re.compile(r"^[0-9a-f]{64}$")
_PRUNE_EVERY_SECONDS = 600


class QueryNotFound(LookupError):
    """The query token is unknown or has expired."""


@dataclass(frozen=True)
class SearchQuery:
    """What a search is about: a library image, or an upload kept aside under its token."""

    image_id: int | None = None
    token: str | None = None
    name: str = ""

    @property
    def path(self) -> Path:
        return query_dir() / f"{self.token}.bin"

    @property
    def thumbnail_path(self) -> Path:
        return query_dir() / f"{self.token}.webp"


def query_dir() -> Path:
    path = Path(settings.SEARCH_QUERY_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def search_query_upload(*, data: bytes, name: str = "", thumbnail: bool = True) -> SearchQuery:
    """Validate an uploaded query image and keep it aside; raises ImageRejected with the reason.

    ``thumbnail=False`` (the API) leaves the thumbnail to be made when first asked for
    (``search_query_thumbnail_path``): a few milliseconds off every search.
    """
    if len(data) > settings.SEARCH_QUERY_MAX_BYTES:
        raise ImageRejected(QUERY_TOO_LARGE.format(size=len(data), limit=settings.SEARCH_QUERY_MAX_BYTES))
    sha256 = hashlib.sha256(data).hexdigest()
    image_id = Image.objects.filter(sha256=sha256).values_list("pk", flat=True).first()
    if image_id is not None:
        return SearchQuery(image_id=image_id, name=name)
    try:
        decoded = decode_image(data, max_pixels=settings.SEARCH_QUERY_MAX_PIXELS, max_pages=1,
                               thumbnail_size=settings.THUMBNAIL_SIZE, thumbnails=thumbnail)
    except ImageRejected as exc:
        # the same checks as an import, with the search limits named in the message
        message = str(exc).replace("IMAGE_MAX_PIXELS", "SEARCH_QUERY_MAX_PIXELS")
        raise ImageRejected(QUERY_ONE_PICTURE if message.startswith("too many pages") else message) from None
    query = SearchQuery(token=sha256, name=name)
    if thumbnail:
        _write_atomically(query.thumbnail_path, decoded.pages[0].thumbnail)
    _write_atomically(query.path, data)
    _write_atomically(query_dir() / f"{sha256}.name", name.encode()[:500])
    _prune_old_queries()
    return query


REGION_TOO_SMALL = "The region is too small: draw a box at least {minimum} pixels wide and high on the picture."
REGION_INVALID = "A region is left, top, right, bottom as shares of the picture (0 to 1), left < right and top < bottom."
REGION_MIN_PIXELS = 16


def search_query_region(*, data: bytes, box: tuple[float, float, float, float], name: str = "") -> SearchQuery:
    """A region of a picture as the query: ``box`` is (left, top, right, bottom) as shares of its width and
    height, as the user drew it on the picture shown. The crop is kept aside like an upload (an image in the
    library is not touched, and the crop joins it only if the user adds it)."""
    left, top, right, bottom = box
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise ImageRejected(REGION_INVALID)
    picture = open_for_display(data)
    width, height = picture.size
    crop = picture.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))
    if min(crop.size) < REGION_MIN_PIXELS:
        raise ImageRejected(REGION_TOO_SMALL.format(minimum=REGION_MIN_PIXELS))
    out = io.BytesIO()
    crop.save(out, format="PNG")
    return search_query_upload(data=out.getvalue(), name=name)


def search_query_add_to_library(*, query: SearchQuery, collection: Collection, label: str = "") -> SearchQuery:
    """Import a kept-aside query into the library (the user chose "add to library"); the same query,
    now a library image."""
    if query.image_id is not None:
        return query
    try:
        data = query.path.read_bytes()
    except FileNotFoundError:
        raise QueryNotFound(QUERY_EXPIRED.format(hours=settings.SEARCH_QUERY_KEEP_HOURS)) from None
    outcome = image_ingest_bytes(data=data, original_name=query.name or f"query-{query.token[:12]}",
                                 collection=collection, label=label, source="search upload")
    if outcome.status == DUPLICATE:  # added a moment ago, by another click or user
        image_id = Image.objects.values_list("pk", flat=True).get(sha256=query.token)
    elif outcome.status == IMPORTED:
        image_id = outcome.image_ids[0]
    else:
        raise ImageRejected(outcome.message)
    return SearchQuery(image_id=image_id, name=query.name)


def search_query_thumbnail_path(*, query: SearchQuery) -> Path:
    """The kept-aside query's thumbnail file, made now if the upload came without one."""
    if not query.thumbnail_path.exists():
        try:
            data = query.path.read_bytes()
        except FileNotFoundError:
            raise QueryNotFound(QUERY_EXPIRED.format(hours=settings.SEARCH_QUERY_KEEP_HOURS)) from None
        decoded = decode_image(data, max_pixels=settings.SEARCH_QUERY_MAX_PIXELS, max_pages=1,
                               thumbnail_size=settings.THUMBNAIL_SIZE)
        _write_atomically(query.thumbnail_path, decoded.pages[0].thumbnail)
    return query.thumbnail_path


def search_query_from_token(token: str) -> SearchQuery:
    """The kept-aside upload with this token (or the library image it has become since)."""
    if not _TOKEN.match(token or ""):
        raise QueryNotFound("Not a query token.")
    image_id = Image.objects.filter(sha256=token).values_list("pk", flat=True).first()
    names = query_dir() / f"{token}.name"
    name = names.read_text(errors="replace") if names.exists() else ""
    if image_id is not None:
        return SearchQuery(image_id=image_id, name=name)
    query = SearchQuery(token=token, name=name)
    try:
        os.utime(query.path)  # in use: keep it another SEARCH_QUERY_KEEP_HOURS
    except FileNotFoundError:
        raise QueryNotFound(QUERY_EXPIRED.format(hours=settings.SEARCH_QUERY_KEEP_HOURS)) from None
    return query


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prune_old_queries() -> None:
    """Remove queries unused for SEARCH_QUERY_KEEP_HOURS; scans the folder at most every ten minutes.

    A query's upload (``.bin``) is touched on every use and decides for its
    thumbnail and name too; it goes first, so a query is never left half there.
    Files that another pruner removed meanwhile are skipped.
    """
    marker = query_dir() / ".pruned"
    now = time.time()
    try:
        if now - marker.stat().st_mtime < _PRUNE_EVERY_SECONDS:
            return
    except FileNotFoundError:
        pass
    marker.touch()
    cutoff = now - settings.SEARCH_QUERY_KEEP_HOURS * 3600
    for upload in query_dir().glob("*.bin"):
        try:
            if upload.stat().st_mtime >= cutoff:
                continue
            upload.unlink()
        except FileNotFoundError:
            continue
        for sibling in (upload.with_suffix(".webp"), upload.with_suffix(".name")):
            sibling.unlink(missing_ok=True)
    for leftover in query_dir().glob(".tmp-*"):  # from a process killed mid-write
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass
