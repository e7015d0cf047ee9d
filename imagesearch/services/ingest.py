"""Turning files into library images: validate, deduplicate, thumbnail, store.

An import job is split into chunks of source items; each chunk is one Celery task
(or runs in-process with ``--inline``). A chunk is idempotent: its rows, its counts
and its "done" mark commit in one transaction, images are unique by SHA-256 and
files are content-addressed, so a chunk redelivered after its worker died re-uses
what the dead run wrote and counts nothing twice. Each item's files are
written before its row is committed (no row without its file); files written by a
run that then fails are removed again, and ``media_sweep_orphans`` removes those a
killed process could not.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from imagesearch import storage
from imagesearch.imaging import DecodedImage, ImageRejected, decode_image
from imagesearch.models import Collection, Document, Image, IngestChunk, Job
from imagesearch.services.jobs import job_advance, job_create, job_finish, job_record_issues, job_start
from imagesearch.sources import SourceError, SourceItem, SourceRejected, iter_source_items, read_source

logger = logging.getLogger(__name__)

IMPORT_JOB_KIND = "import_images"
DEFAULT_COLLECTION = "Default"

IMPORTED = "imported"
DUPLICATE = "duplicate"
FAILED = "failed"


@dataclass
class IngestOutcome:
    """What happened to one source file."""

    source: str
    status: str  # IMPORTED, DUPLICATE or FAILED
    message: str = ""
    image_ids: list[int] = field(default_factory=list)
    document_id: int | None = None


@dataclass
class _PreparedImage:
    sha256: str
    file_name: str
    thumbnail_name: str
    file_size: int
    width: int
    height: int
    format: str
    media_type: str
    page_number: int | None = None


@dataclass
class _Prepared:
    """An item whose files are written and whose rows are ready to insert."""

    source: str
    original_name: str
    label: str
    sha256: str
    images: list[_PreparedImage]
    document: dict | None = None  # for multi-page files: the Document's fields
    created_files: list[str] = field(default_factory=list)


def collection_get_or_create(*, name: str = DEFAULT_COLLECTION) -> Collection:
    collection, _ = Collection.objects.get_or_create(name=name.strip() or DEFAULT_COLLECTION)
    return collection


# --- one item ---------------------------------------------------------------


def _already_stored(sha256: str) -> bool:
    """Whether an image or a document with these bytes is in the library."""
    return Image.objects.filter(sha256=sha256).exists() or Document.objects.filter(sha256=sha256).exists()


def _prepare(data: bytes, *, sha256: str, source: str, original_name: str, label: str) -> _Prepared:
    """Decode and store the files of one source (``sha256`` of ``data``); raises ImageRejected."""
    decoded = decode_image(
        data,
        max_pixels=settings.IMAGE_MAX_PIXELS,
        max_pages=settings.IMAGE_MAX_PAGES,
        thumbnail_size=settings.THUMBNAIL_SIZE,
    )
    prepared = _Prepared(
        source=source, original_name=original_name, label=label or "", sha256=sha256, images=[]
    )
    try:
        original = storage.original_name(sha256, decoded.extension)
        _store(prepared, original, data)
        if decoded.is_multipage:
            prepared.document = _prepare_document(prepared, decoded, original, len(data))
        else:
            page = decoded.pages[0]
            thumb = storage.thumbnail_name(sha256)
            _store(prepared, thumb, page.thumbnail)
            prepared.images.append(
                _PreparedImage(
                    sha256=sha256, file_name=original, thumbnail_name=thumb, file_size=len(data),
                    width=page.width, height=page.height, format=decoded.format,
                    media_type=decoded.media_type,
                )
            )
    except BaseException:
        _remove_unreferenced(prepared.created_files)
        raise
    return prepared


def _prepare_document(prepared: _Prepared, decoded: DecodedImage, original: str, size: int) -> dict:
    for page in decoded.pages:
        page_sha = hashlib.sha256(page.page_png).hexdigest()
        file_name = storage.original_name(page_sha, ".png")
        thumb = storage.thumbnail_name(page_sha)
        _store(prepared, file_name, page.page_png)
        _store(prepared, thumb, page.thumbnail)
        prepared.images.append(
            _PreparedImage(
                sha256=page_sha, file_name=file_name, thumbnail_name=thumb, file_size=len(page.page_png),
                width=page.width, height=page.height, format="PNG", media_type="image/png",
                page_number=page.page_number,
            )
        )
    return {
        "title": Path(prepared.original_name).stem or prepared.original_name,
        "media_type": decoded.media_type,
        "page_count": len(decoded.pages),
        "file": original,
        "file_size": size,
    }


def _store(prepared: _Prepared, name: str, data: bytes) -> None:
    if storage.store_bytes(name, data):
        prepared.created_files.append(name)


def _insert(prepared: _Prepared, *, collection_id: int, job_id: int | None) -> IngestOutcome:
    """Insert the rows of one prepared item in a savepoint; a hash conflict is a duplicate."""
    try:
        with transaction.atomic():
            document = None
            if prepared.document is not None:
                document = Document.objects.create(
                    collection_id=collection_id, sha256=prepared.sha256, original_name=prepared.original_name,
                    source_path=prepared.source, ingest_job_id=job_id, **prepared.document,
                )
            images = []
            for p in prepared.images:
                if document is not None and Image.objects.filter(sha256=p.sha256).exists():
                    continue  # an identical page (a blank one, say) is in the library already
                images.append(
                    Image.objects.create(
                        collection_id=collection_id, document=document, page_number=p.page_number,
                        file=p.file_name, thumbnail=p.thumbnail_name, sha256=p.sha256,
                        file_size=p.file_size, width=p.width, height=p.height, format=p.format,
                        media_type=p.media_type, original_name=prepared.original_name,
                        source_path=prepared.source, label=prepared.label, ingest_job_id=job_id,
                    )
                )
    except IntegrityError:
        # Another worker committed the same bytes first: its rows own these files.
        return IngestOutcome(prepared.source, DUPLICATE, "already in the library")
    return IngestOutcome(
        prepared.source, IMPORTED, image_ids=[i.pk for i in images],
        document_id=document.pk if document else None,
    )


def _remove_unreferenced(names: list[str]) -> None:
    """Delete files we wrote unless a committed row refers to them."""
    if not names:
        return
    referenced: set[str] = set()
    for file_name, thumb in Image.objects.filter(Q(file__in=names) | Q(thumbnail__in=names)).values_list(
        "file", "thumbnail"
    ):
        referenced.update((file_name, thumb))
    referenced.update(Document.objects.filter(file__in=names).values_list("file", flat=True))
    storage.remove_files([n for n in names if n not in referenced])


def image_ingest_bytes(
    *, data: bytes, original_name: str, collection: Collection, label: str = "", source: str = ""
) -> IngestOutcome:
    """Import one file given as bytes (an upload). Never raises for bad input."""
    source = source or original_name
    sha256 = hashlib.sha256(data).hexdigest()
    if _already_stored(sha256):
        return IngestOutcome(source, DUPLICATE, "already in the library")
    try:
        if len(data) > settings.IMAGE_MAX_BYTES:
            raise SourceRejected(
                f"file too large: {len(data):,} bytes exceeds the limit of {settings.IMAGE_MAX_BYTES:,}"
            )
        prepared = _prepare(data, sha256=sha256, source=source, original_name=original_name, label=label)
    except (ImageRejected, SourceRejected) as exc:
        return IngestOutcome(source, FAILED, str(exc))
    try:
        with transaction.atomic():
            outcome = _insert(prepared, collection_id=collection.pk, job_id=None)
            _embed_when_committed(outcome.image_ids)
    except BaseException:
        _remove_unreferenced(prepared.created_files)
        raise
    return outcome


def _train_first_models() -> None:
    from ranking.services.training import autoencoder_train_first_models

    autoencoder_train_first_models()


def _embed_when_committed(image_ids: list[int]) -> None:
    """New images are embedded with the models in use once their rows are committed."""
    from ranking.services.embeddings import embeddings_schedule_new_images

    embeddings_schedule_new_images(image_ids=image_ids)


# --- import jobs --------------------------------------------------------------


def ingest_job_create(
    *,
    paths: Iterable[str | os.PathLike],
    collection_name: str = DEFAULT_COLLECTION,
    label_from_folder: bool = False,
    created_by=None,
    chunk_size: int | None = None,
) -> Job:
    """List the sources under ``paths`` and split them into chunks of one job.

    Paths that yield nothing (missing, unreadable archives) are recorded as issues.
    """
    chunk_size = chunk_size or settings.INGEST_CHUNK_SIZE
    paths = [str(Path(p).expanduser().absolute()) for p in paths]
    collection = collection_get_or_create(name=collection_name)
    items: list[list] = []
    problems: list[tuple[str, str]] = []
    for entry in iter_source_items(paths, label_from_folder=label_from_folder):
        if isinstance(entry, SourceError):
            problems.append((entry.display, entry.reason))
        else:
            items.append(entry.to_json())
    with transaction.atomic():
        job = job_create(
            kind=IMPORT_JOB_KIND,
            total=len(items),
            created_by=created_by,
            params={
                "paths": paths,
                "collection_id": collection.pk,
                "collection": collection.name,
                "label_from_folder": label_from_folder,
                "unreadable_paths": len(problems),
            },
            message=f"{len(items):,} files to import into {collection.name}",
        )
        job_record_issues(job_id=job.pk, issues=problems)
        IngestChunk.objects.bulk_create(
            IngestChunk(job=job, index=i, items=items[start : start + chunk_size])
            for i, start in enumerate(range(0, len(items), chunk_size))
        )
        if not items:
            job_finish(job_id=job.pk, message="Nothing to import.", result=_job_result(job.pk, len(problems)))
    return job


def ingest_job_dispatch(*, job_id: int) -> int:
    """Queue a Celery task per pending chunk once the transaction commits."""
    from imagesearch.tasks import ingest_chunk

    chunk_ids = list(
        IngestChunk.objects.filter(job_id=job_id, status=IngestChunk.Status.PENDING)
        .order_by("index")
        .values_list("pk", flat=True)
    )
    transaction.on_commit(lambda: [ingest_chunk.delay(chunk_id) for chunk_id in chunk_ids])
    return len(chunk_ids)


def ingest_job_run_inline(*, job_id: int, on_chunk_done: Callable[[], None] | None = None) -> None:
    """Process every pending chunk of the job in this process."""
    for chunk_id in (
        IngestChunk.objects.filter(job_id=job_id, status=IngestChunk.Status.PENDING)
        .order_by("index")
        .values_list("pk", flat=True)
    ):
        ingest_chunk_process(chunk_id=chunk_id)
        if on_chunk_done:
            on_chunk_done()


def ingest_chunk_process(*, chunk_id: int) -> None:
    """Import one chunk. Safe to call again for the same chunk (it then does nothing)."""
    chunk = IngestChunk.objects.select_related("job").get(pk=chunk_id)
    job = chunk.job
    if chunk.status == IngestChunk.Status.DONE or job.is_finished:
        return
    job_start(job_id=job.pk)
    collection_id = job.params["collection_id"]
    outcomes: list[IngestOutcome] = []
    prepared_items: list[_Prepared] = []
    try:
        for raw in chunk.items:
            result = _prepare_source(SourceItem.from_json(raw))
            (prepared_items if isinstance(result, _Prepared) else outcomes).append(result)
        _commit_chunk(chunk_id, prepared_items, outcomes, collection_id=collection_id)
    except BaseException:
        for prepared in prepared_items:
            _remove_unreferenced(prepared.created_files)
        raise


def _prepare_source(item: SourceItem) -> _Prepared | IngestOutcome:
    try:
        data = read_source(item, max_bytes=settings.IMAGE_MAX_BYTES)
        sha256 = hashlib.sha256(data).hexdigest()
        if _already_stored(sha256):
            return IngestOutcome(item.display, DUPLICATE, "already in the library")
        return _prepare(data, sha256=sha256, source=item.display, original_name=item.name, label=item.label or "")
    except (SourceRejected, ImageRejected) as exc:
        return IngestOutcome(item.display, FAILED, str(exc))
    except DatabaseError:
        raise
    except Exception as exc:  # a decoder bug on a hostile file must not stop the import
        logger.exception("unexpected error importing %s", item.display)
        return IngestOutcome(item.display, FAILED, f"could not read image ({type(exc).__name__}: {exc})")


def _commit_chunk(
    chunk_id: int, prepared_items: list[_Prepared], outcomes: list[IngestOutcome], *, collection_id: int
) -> None:
    with transaction.atomic():
        chunk = IngestChunk.objects.select_for_update().get(pk=chunk_id)
        # Locking the job row serialises chunk commits of one job, so exactly one
        # of them sees no pending chunk left and closes the job.
        job = Job.objects.select_for_update().get(pk=chunk.job_id)
        if chunk.status == IngestChunk.Status.DONE:
            return  # a parallel run of this chunk finished first; its rows own the files
        for prepared in prepared_items:
            outcomes.append(_insert(prepared, collection_id=collection_id, job_id=job.pk))
        failures = [(o.source, o.message) for o in outcomes if o.status == FAILED]
        _embed_when_committed([i for o in outcomes if o.status == IMPORTED for i in o.image_ids])
        chunk.imported = sum(len(o.image_ids) for o in outcomes if o.status == IMPORTED)
        chunk.duplicates = sum(1 for o in outcomes if o.status == DUPLICATE)
        chunk.failed = len(failures)
        chunk.status = IngestChunk.Status.DONE
        chunk.finished_at = timezone.now()
        chunk.save()
        job_record_issues(job_id=job.pk, issues=failures)
        job_advance(job_id=job.pk, done=len(chunk.items))
        if not IngestChunk.objects.filter(job_id=job.pk, status=IngestChunk.Status.PENDING).exists():
            result = _job_result(job.pk, job.params.get("unreadable_paths", 0))
            job_finish(job_id=job.pk, message=_summary(result), result=result)
            if result["imported"]:
                _train_first_models()


def _job_result(job_id: int, unreadable_paths: int) -> dict:
    totals = IngestChunk.objects.filter(job_id=job_id).aggregate(
        imported=Sum("imported"), duplicates=Sum("duplicates"), failed=Sum("failed")
    )
    return {
        "imported": totals["imported"] or 0,
        "duplicates": totals["duplicates"] or 0,
        "failed": (totals["failed"] or 0) + unreadable_paths,
    }


def _summary(result: dict) -> str:
    return (
        f"Imported {result['imported']:,} images; {result['duplicates']:,} already in the library; "
        f"{result['failed']:,} failed."
    )
