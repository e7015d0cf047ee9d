"""The library's collections, and its edits beyond import: deleting images, sweeping orphan files."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from imagesearch import storage
from imagesearch.errors import AppError
from imagesearch.imaging import make_thumbnail, placeholder_thumbnail
from imagesearch.models import Collection, Document, Image, Job

DEFAULT_COLLECTION = "Default"


def collection_get_or_create(*, name: str = DEFAULT_COLLECTION) -> Collection:
    collection, _ = Collection.objects.get_or_create(name=name.strip() or DEFAULT_COLLECTION)
    return collection


def images_move(*, image_ids: list[int], collection_name: str) -> tuple[Collection, int]:
    """Put the images into the named collection (made if new); returns it and how many moved. A picture
    taken from a document moves alone: the document stays in its collection."""
    name = collection_name.strip()
    if not name:
        raise AppError("Name the collection to put the images in.", field="name")
    if len(name) > Collection._meta.get_field("name").max_length:
        raise AppError("A collection's name is at most 200 characters.", field="name")
    with transaction.atomic():
        collection = collection_get_or_create(name=name)
        moved = Image.objects.filter(pk__in=image_ids).exclude(collection=collection).update(collection=collection)
    return collection, moved


def images_label(*, image_ids: list[int], label: str) -> int:
    """Give the images a label (an empty one clears it); returns how many changed."""
    label = label.strip()
    if len(label) > Image._meta.get_field("label").max_length:
        raise AppError("A label is at most 200 characters.", field="name")
    return Image.objects.filter(pk__in=image_ids).exclude(label=label).update(label=label)


def image_delete(*, image: Image) -> None:
    """Delete an image's row, then its files once the deletion is committed."""
    names = [image.file.name, image.thumbnail.name]
    with transaction.atomic():
        image.delete()
        transaction.on_commit(lambda: storage.remove_files(names))


def thumbnail_ensure(*, name: str) -> bool:
    """Make a library image's thumbnail if it is not stored yet; False when no image has it.

    Photos taken from documents get theirs when first shown: an import of millions of
    document images then runs near PDFium's own speed, and most are never looked at. A
    picture that cannot be decoded (damaged inside, which the import's header check does not
    see) gets a grey placeholder, once, and is marked ``metadata["unreadable"]``.
    """
    sha256 = Path(name).stem  # content-addressed: the name holds the hash (a unique index)
    image = Image.objects.filter(sha256=sha256, thumbnail=name).only("file", "thumbnail", "metadata").first()
    if image is None:
        return False
    if not storage.media_path(name).exists():
        try:
            thumbnail = make_thumbnail(storage.media_path(image.file.name).read_bytes(),
                                       thumbnail_size=settings.THUMBNAIL_SIZE)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            thumbnail = placeholder_thumbnail(settings.THUMBNAIL_SIZE)
            Image.objects.filter(pk=image.pk).update(
                metadata={**(image.metadata or {}), "unreadable": f"{type(exc).__name__}: {exc}"})
        storage.store_bytes(name, thumbnail)
    return True


def media_sweep_orphans(*, min_age_seconds: float = 3600, batch_size: int = 2000) -> int:
    """Remove stored files that no row refers to, and stale temporary files.

    Only files older than ``min_age_seconds`` are touched, so an import that has
    written its files but not yet committed its rows is left alone. Returns the
    number of files removed.
    """
    root = settings.MEDIA_ROOT
    cutoff = time.time() - min_age_seconds
    removed = 0
    batch: list[str] = []
    for top in ("originals", "thumbs"):
        for dirpath, _dirnames, filenames in os.walk(os.path.join(root, top)):
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                try:
                    if os.stat(path).st_mtime > cutoff:
                        continue
                except FileNotFoundError:
                    continue
                if filename.startswith(storage.TEMP_PREFIX):
                    os.unlink(path)
                    removed += 1
                    continue
                batch.append(os.path.relpath(path, root))
                if len(batch) >= batch_size:
                    removed += _remove_unreferenced_batch(batch)
                    batch = []
    return removed + _remove_unreferenced_batch(batch) + _sweep_uploads(cutoff)


def _sweep_uploads(cutoff: float) -> int:
    """Remove uploaded-document folders whose import job has ended (cancelled, failed: a
    finished job removes its own) or never came to be; returns the files removed."""
    folder = Path(settings.DOCUMENT_UPLOAD_DIR)
    if not folder.is_dir():
        return 0
    in_use = {job.params.get("upload_dir") for job in Job.objects.filter(
        kind=Job.Kind.IMPORT, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).only("params")}
    removed = 0
    for upload in folder.iterdir():
        try:
            if not upload.is_dir() or str(upload) in in_use or upload.stat().st_mtime > cutoff:
                continue
            removed += sum(1 for p in upload.rglob("*") if p.is_file())
        except FileNotFoundError:
            continue
        shutil.rmtree(upload, ignore_errors=True)
    return removed


def _remove_unreferenced_batch(names: list[str]) -> int:
    if not names:
        return 0
    referenced = set(Image.objects.filter(file__in=names).values_list("file", flat=True))
    referenced.update(Image.objects.filter(thumbnail__in=names).values_list("thumbnail", flat=True))
    referenced.update(Document.objects.filter(file__in=names).values_list("file", flat=True))
    orphans = [name for name in names if name not in referenced]
    storage.remove_files(orphans)
    return len(orphans)
