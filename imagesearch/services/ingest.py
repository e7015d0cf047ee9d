"""Importing into the library: a file given as bytes or uploads now (``image_ingest_bytes``,
``image_upload``), and import jobs over folders, archives and documents.

An import job is split into chunks of source items; each chunk is one Celery task (or runs
in-process with ``--inline``), through the job engine (``jobs.job_chunks_run``). A chunk is
idempotent: its rows, its counts and its "done" mark commit in one transaction
(``jobs.job_chunk_commit``), images are unique by SHA-256 and files are content-addressed, so a
chunk redelivered after its worker died re-uses what the dead run wrote and counts nothing twice.
Preparing the files is ``import_files``; writing the rows is ``import_rows``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, transaction
from django.db.models import Sum
from django.utils import timezone

from imagesearch.documents import DocumentRejected, is_pdf
from imagesearch.imaging import ImageRejected
from imagesearch.models import Collection, Image, IngestChunk, Job
from imagesearch.services.import_files import (
    ALREADY_STORED, DUPLICATE, FAILED, IMPORTED, QUEUED, IngestOutcome, PreparedItem, bytes_in_library,
    files_remove_unreferenced, prepared_from_bytes, prepared_from_source,
)
from imagesearch.services.import_rows import rows_insert, rows_insert_item
from imagesearch.services.jobs import (
    ChunkCommit, job_chunk_commit, job_chunk_start, job_chunks_run, job_create, job_finish, job_part_reporter,
    job_record_issues,
)
from imagesearch.services.library import DEFAULT_COLLECTION, collection_get_or_create
from imagesearch.signals import images_added, import_finished
from imagesearch.sources import HEAD_BYTES, SourceError, SourceItem, SourceRejected, iter_source_items, name_as_text

logger = logging.getLogger(__name__)

PDF_HERE = "PDF documents are imported with POST /api/documents/upload/ (by the workers, a task per document)"
UPLOAD_QUEUED = "imported in the background by import job #{job}"
# Image uploads are imported in the request up to this many bytes in all; the others, and every TIFF
# (a multi-page scan can take a minute), are left to an import job on the workers.
UPLOAD_INLINE_MAX_BYTES = 16 * 1024 * 1024
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


# --- one item ---------------------------------------------------------------


def image_ingest_bytes(
    *, data: bytes, original_name: str, collection: Collection, label: str = "", source: str = ""
) -> IngestOutcome:
    """Import one file given as bytes (an upload). Never raises for bad input."""
    source = source or original_name
    sha256 = hashlib.sha256(data).hexdigest()
    if bytes_in_library(sha256):
        return IngestOutcome(source, DUPLICATE, ALREADY_STORED)
    try:
        prepared = prepared_from_bytes(data, sha256=sha256, source=source, original_name=original_name, label=label)
    except (ImageRejected, DocumentRejected, SourceRejected) as exc:
        return IngestOutcome(source, FAILED, str(exc))
    except DatabaseError:
        raise
    except Exception as exc:  # a decoder bug on a hostile file must not become a server error
        logger.exception("unexpected error importing %s", source)
        return IngestOutcome(source, FAILED, f"could not read file ({type(exc).__name__}: {exc})")
    try:
        with transaction.atomic():
            outcome = rows_insert_item(prepared, collection_id=collection.pk, job_id=None)
            images_added.send(sender=Image, image_ids=outcome.image_ids)
    except BaseException:
        files_remove_unreferenced(prepared.created_files)
        raise
    return outcome


@dataclass
class ImageUpload:
    """What became of uploaded files: an outcome per file, in order (QUEUED: left to ``job``)."""

    outcomes: list[IngestOutcome]
    job: Job | None = None


def image_upload(
    *, files: list[UploadedFile], collection_name: str = DEFAULT_COLLECTION, label: str = "", created_by=None,
) -> ImageUpload:
    """Import uploaded image files: small ones now, in this request; TIFFs (a multi-page scan is a
    document, its pages can take a minute) and what is past UPLOAD_INLINE_MAX_BYTES by an import job
    on the workers, as uploaded documents are, so that no web thread waits on them. PDFs are refused
    here: they are documents, uploaded by those who may add documents."""
    collection = collection_get_or_create(name=collection_name)
    outcomes: list[IngestOutcome] = []
    queued: list[UploadedFile] = []
    inline_bytes = 0
    for upload in files:
        name = upload.name or "upload"
        head = upload.read(HEAD_BYTES)  # the size is known without reading: only the head is read here
        upload.seek(0)
        if is_pdf(head):
            outcomes.append(IngestOutcome(name, FAILED, PDF_HERE))
        elif head.startswith(_TIFF_MAGIC) or inline_bytes + upload.size > UPLOAD_INLINE_MAX_BYTES:
            queued.append(upload)
            outcomes.append(IngestOutcome(name, QUEUED))
        else:
            inline_bytes += upload.size
            outcomes.append(image_ingest_bytes(data=upload.read(), original_name=name, collection=collection,
                                               label=label))
    if not queued:
        return ImageUpload(outcomes)
    job = _upload_job(queued, collection=collection, label=label, created_by=created_by)
    for outcome in outcomes:
        if outcome.status == QUEUED:
            outcome.message = UPLOAD_QUEUED.format(job=job.pk)
    return ImageUpload(outcomes, job)


def _upload_job(files: list[UploadedFile], *, collection: Collection, label: str, created_by) -> Job:
    """The import job of uploaded files: the document upload's (one upload folder, one job engine),
    with the label of the upload for every file."""
    from imagesearch.services.documents import document_upload  # it imports this module

    with transaction.atomic():  # the job's tasks are queued when this commits, so they see its label
        job = document_upload(files=files, collection_name=collection.name, created_by=created_by)
        if label:
            job.params = {**job.params, "label": label}
            Job.objects.filter(pk=job.pk).update(params=job.params)
    return job


# --- import jobs --------------------------------------------------------------


def ingest_job_create(
    *,
    paths: Iterable[str | os.PathLike],
    collection_name: str = DEFAULT_COLLECTION,
    label_from_folder: bool = False,
    created_by=None,
    chunk_size: int | None = None,
    upload_dir: str | None = None,
    pdf_options: dict | None = None,
    into_document_id: int | None = None,
) -> Job:
    """List the sources under ``paths`` and split them into chunks of one job: documents
    (PDFs) whole, a few small ones or one large one a chunk (``_document_chunks``), other
    files ``chunk_size`` at a time.

    Paths that yield nothing (missing, unreadable archives) are recorded as issues.
    ``upload_dir``: a folder of uploaded files, removed when the job has finished. ``pdf_options``: the job's
    own choices for its PDFs (``import_files.PDF_JOB_OPTIONS``). ``into_document_id``: the one path is that
    library document's file, read again (with those options): its new pictures join it.
    """
    chunk_size = chunk_size or settings.INGEST_CHUNK_SIZE
    paths = [str(Path(p).expanduser().absolute()) for p in paths]
    collection = collection_get_or_create(name=collection_name)
    items: list[list] = []
    documents: list[SourceItem] = []
    problems: list[tuple[str, str]] = []
    for entry in iter_source_items(paths, label_from_folder=label_from_folder):
        if isinstance(entry, SourceError):
            problems.append((entry.display, entry.reason))
        elif entry.is_document:
            documents.append(entry)
        else:
            items.append(entry.to_json())
    chunks = _document_chunks(documents) + [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    total = len(items) + len(documents)
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.IMPORT,
            total=total,
            created_by=created_by,
            params={
                "paths": [name_as_text(path) for path in paths],
                "collection_id": collection.pk,
                "collection": collection.name,
                "label_from_folder": label_from_folder,
                "unreadable_paths": len(problems),
                "upload_dir": upload_dir,
                "pdf_options": pdf_options or {},
                "into_document_id": into_document_id,
            },
            message=_listing_message(len(items), len(documents), collection.name),
        )
        job_record_issues(job_id=job.pk, issues=problems)
        IngestChunk.objects.bulk_create(IngestChunk(job=job, index=i, items=chunk) for i, chunk in enumerate(chunks))
        if not total:
            job_finish(job_id=job.pk, message="Nothing to import.", result=_job_result(job.pk, len(problems)))
            _remove_upload_dir(job.params)
    return job


def _document_chunks(documents: list[SourceItem]) -> list[list]:
    """Each document goes whole into one chunk (one task, one transaction); small ones share a
    chunk up to INGEST_DOCUMENTS_PER_CHUNK documents or INGEST_DOCUMENT_CHUNK_BYTES bytes, so that
    a task's fixed cost (its queries, the broker) is not paid per one-page PDF."""
    chunks: list[list] = []
    current: list[list] = []
    current_bytes = 0
    for item in documents:
        size = item.size or 0
        if current and (len(current) >= settings.INGEST_DOCUMENTS_PER_CHUNK
                        or current_bytes + size > settings.INGEST_DOCUMENT_CHUNK_BYTES):
            chunks.append(current)
            current, current_bytes = [], 0
        current.append(item.to_json())
        current_bytes += size
    if current:
        chunks.append(current)
    return chunks


def _listing_message(images: int, documents: int, collection: str) -> str:
    parts = [f"{documents:,} document{'s' if documents != 1 else ''}"] if documents else []
    if images or not documents:
        parts.append(f"{images:,} file{'s' if images != 1 else ''}")
    return f"{' and '.join(parts)} to import into {collection}"


def _remove_upload_dir(params: dict) -> None:
    """Uploaded files are in the library once their job is done (those of a job that ends otherwise
    are removed by ``library.media_sweep_orphans``)."""
    folder = params.get("upload_dir")
    if folder and Path(folder).is_relative_to(settings.DOCUMENT_UPLOAD_DIR):
        shutil.rmtree(folder, ignore_errors=True)


def ingest_job_run(*, job_id: int, inline: bool = False, on_chunk_done: Callable[[], None] | None = None) -> int:
    """Run the job's pending chunks: a Celery task each, queued when the transaction commits, or
    ``inline``, one after the other in this process. Returns how many."""
    from imagesearch.tasks import ingest_chunk

    return job_chunks_run(IngestChunk, job_id=job_id, process=ingest_chunk_process,
                          task=None if inline else ingest_chunk, on_chunk_done=on_chunk_done)


def ingest_chunk_process(*, chunk_id: int) -> None:
    """Import one chunk. Safe to call again for the same chunk (it then does nothing)."""
    chunk = job_chunk_start(IngestChunk, chunk_id=chunk_id)
    if chunk is None:
        return
    job = chunk.job
    outcomes: list[IngestOutcome] = []
    prepared_items: list[PreparedItem] = []
    committed = False
    # the job's bar moves while the chunk runs, not only when it commits (one chunk can be the whole import)
    report = job_part_reporter(job_id=job.pk, part=_part(chunk), size=chunk.size,
                               pending=IngestChunk.objects.filter(pk=chunk.pk, status=IngestChunk.Status.PENDING))
    try:
        for done, raw in enumerate(chunk.items, 1):
            result = prepared_from_source(SourceItem.from_json(raw), label=job.params.get("label", ""),
                                          pdf_options=job.params.get("pdf_options"),
                                          again=bool(job.params.get("into_document_id")))
            (prepared_items if isinstance(result, PreparedItem) else outcomes).append(result)
            report(done)
        committed = job_chunk_commit(
            IngestChunk, chunk_id=chunk_id, part=_part(chunk), close=_close,
            write=lambda chunk, job: _write_chunk(chunk, job, prepared_items, outcomes),
        ) is not ChunkCommit.SKIPPED
    finally:
        if not committed:  # a parallel run of this chunk finished first (its rows own the files), or the job ended
            for prepared in prepared_items:
                files_remove_unreferenced(prepared.created_files)


def _part(chunk: IngestChunk) -> str:
    """The chunk's name in its job's progress (``jobs.job_report_part``)."""
    return f"chunk {chunk.index}"


def _write_chunk(chunk: IngestChunk, job: Job, prepared_items: list[PreparedItem],
                 outcomes: list[IngestOutcome]) -> list[str]:
    """The chunk's rows, its counts, its issues, and the job's running totals (``jobs.job_chunk_commit``)."""
    outcomes.extend(rows_insert(prepared_items, collection_id=job.params["collection_id"], job_id=job.pk,
                                into_document_id=job.params.get("into_document_id"),
                                read_with=job.params.get("pdf_options")))
    failures = [(o.source, o.message) for o in outcomes if o.status == FAILED]
    warnings = [(f"{o.source} ({w.split(':', 1)[0]})", w) for o in outcomes for w in o.warnings]
    added = [i for o in outcomes if o.status == IMPORTED for i in o.image_ids]
    images_added.send(sender=Image, image_ids=added)
    chunk.imported = sum(len(o.image_ids) for o in outcomes if o.status == IMPORTED)
    chunk.documents = sum(1 for o in outcomes if o.status == IMPORTED and o.document_id)
    chunk.duplicates = sum(1 for o in outcomes if o.status == DUPLICATE)
    chunk.failed = len(failures)
    job_record_issues(job_id=job.pk, issues=failures + warnings)
    _record_running_totals(job, chunk)
    return ["imported", "documents", "duplicates", "failed"]


def _close(job: Job) -> None:
    """The last chunk has committed: the job's summary, and the uploaded files go."""
    result = _job_result(job.pk, job.params.get("unreadable_paths", 0))
    job_finish(job_id=job.pk, message=_summary(result), result=result)
    params = dict(job.params)
    transaction.on_commit(lambda: _remove_upload_dir(params))
    import_finished.send(sender=Job, job_id=job.pk, imported=result["imported"])


def _record_running_totals(job: Job, chunk: IngestChunk) -> None:
    """Add a chunk's counts to the job's running totals (the caller holds the job's row lock),
    so the UI shows documents and images done and the image rate while the job runs."""
    # read again: another chunk's progress under way may have changed it since the job was read
    totals = dict(Job.objects.values_list("result", flat=True).get(pk=job.pk) or {})
    for key in ("imported", "documents", "duplicates", "failed"):
        totals[key] = totals.get(key, 0) + getattr(chunk, key)
    totals["images_per_second"] = _images_per_second(totals["imported"], job.started_at)
    Job.objects.filter(pk=job.pk).update(result=totals, message=_summary(totals, running=True))


def _job_result(job_id: int, unreadable_paths: int) -> dict:
    totals = IngestChunk.objects.filter(job_id=job_id).aggregate(
        imported=Sum("imported"), documents=Sum("documents"), duplicates=Sum("duplicates"), failed=Sum("failed")
    )
    imported = totals["imported"] or 0
    started_at = Job.objects.filter(pk=job_id).values_list("started_at", flat=True).first()
    return {
        "imported": imported,
        "documents": totals["documents"] or 0,
        "duplicates": totals["duplicates"] or 0,
        "failed": (totals["failed"] or 0) + unreadable_paths,
        "images_per_second": _images_per_second(imported, started_at),
    }


def _images_per_second(imported: int, started_at) -> float:
    elapsed = (timezone.now() - started_at).total_seconds() if started_at else 0
    return round(imported / elapsed, 2) if elapsed > 0 else 0.0


def _summary(result: dict, running: bool = False) -> str:
    documents = result.get("documents", 0)
    what = f"{result['imported']:,} images"
    if documents:
        what = f"{documents:,} document{'s' if documents != 1 else ''} and {what}"
    verb = "Imported so far" if running else "Imported"
    return (
        f"{verb} {what}; {result['duplicates']:,} already in the library; {result['failed']:,} failed."
    )
