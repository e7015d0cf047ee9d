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
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from imagesearch import storage
from imagesearch.documents import PDF_MEDIA_TYPE, DocumentRejected, PdfOptions, PdfPicture, PdfPictures, is_pdf
from imagesearch.imaging import DecodedImage, DecodedPage, ImageRejected, check_jpeg, decode_image, encode_pixels
from imagesearch.models import Collection, Document, Image, IngestChunk, Job
from imagesearch.services.jobs import (
    job_advance, job_create, job_finish, job_part_reporter, job_record_issues, job_start,
)
from imagesearch.signals import images_added, import_finished
from imagesearch.sources import (
    HEAD_BYTES, TOO_LARGE, SourceError, SourceItem, SourceRejected, iter_source_items, name_as_text, read_source,
)

logger = logging.getLogger(__name__)

IMPORT_JOB_KIND = "import_images"
DEFAULT_COLLECTION = "Default"

IMPORTED = "imported"
DUPLICATE = "duplicate"
FAILED = "failed"
QUEUED = "queued"  # an upload left to an import job

NAME_SHORTENED = "{what}: shortened to {limit} characters (it had {length})"
NOT_STORED = "could not be stored ({detail})"
PDF_HERE = "PDF documents are imported with POST /api/documents/upload/ (by the workers, a task per document)"
UPLOAD_QUEUED = "imported in the background by import job #{job}"
# Image uploads are imported in the request up to this many bytes in all; the others, and every TIFF
# (a multi-page scan can take a minute), are left to an import job on the workers.
UPLOAD_INLINE_MAX_BYTES = 16 * 1024 * 1024
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


@dataclass
class IngestOutcome:
    """What happened to one source file."""

    source: str
    status: str  # IMPORTED, DUPLICATE or FAILED
    message: str = ""
    image_ids: list[int] = field(default_factory=list)
    document_id: int | None = None
    warnings: list[str] = field(default_factory=list)  # parts left out (a page that could not be read)


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
    bbox: tuple | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class _Prepared:
    """An item whose files are written and whose rows are ready to insert."""

    source: str
    original_name: str
    label: str
    sha256: str
    images: list[_PreparedImage]
    document: dict | None = None  # for documents and multi-page files: the Document's fields
    created_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def collection_get_or_create(*, name: str = DEFAULT_COLLECTION) -> Collection:
    collection, _ = Collection.objects.get_or_create(name=name.strip() or DEFAULT_COLLECTION)
    return collection


# --- one item ---------------------------------------------------------------


def _already_stored(sha256: str) -> bool:
    """Whether an image or a document with these bytes is in the library (one round trip)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {Image._meta.db_table} WHERE sha256 = %s) "
            f"OR EXISTS (SELECT 1 FROM {Document._meta.db_table} WHERE sha256 = %s)", [sha256, sha256])
        return cursor.fetchone()[0]


def _size_limit(head: bytes) -> tuple[int, str]:
    """The size limit for a file that starts with ``head``, and its setting's name."""
    if is_pdf(head):
        return settings.DOCUMENT_MAX_BYTES, "DOCUMENT_MAX_BYTES"
    return settings.IMAGE_MAX_BYTES, "IMAGE_MAX_BYTES"


def _check_size(data: bytes) -> None:
    limit, name = _size_limit(data[:HEAD_BYTES])
    if len(data) > limit:
        raise SourceRejected(TOO_LARGE.format(size=len(data), limit=limit, name=name))


_NAME_LIMIT = Image._meta.get_field("original_name").max_length  # Document.original_name and title too
_LABEL_LIMIT = Image._meta.get_field("label").max_length


def _new_prepared(*, sha256: str, source: str, original_name: str, label: str) -> _Prepared:
    """An item with its names as the library stores them: valid text (``name_as_text``), shortened
    to fit their columns, which the item's warnings say, rather than failing the whole chunk."""
    warnings: list[str] = []
    return _Prepared(
        source=name_as_text(source), sha256=sha256, images=[], warnings=warnings,
        original_name=_fitted(name_as_text(original_name), _NAME_LIMIT, "name", warnings),
        label=_fitted(name_as_text(label or ""), _LABEL_LIMIT, "label", warnings),
    )


def _fitted(text: str, limit: int, what: str, warnings: list[str]) -> str:
    if len(text) <= limit:
        return text
    warnings.append(NAME_SHORTENED.format(what=what, limit=limit, length=len(text)))
    stem, suffix = os.path.splitext(text)
    suffix = suffix if len(suffix) <= 10 else ""  # the extension stays: it says what the file is
    return stem[: limit - len(suffix) - 1] + "…" + suffix


def _prepare(data: bytes, *, sha256: str, source: str, original_name: str, label: str) -> _Prepared:
    """Decode and store the files of one source (``sha256`` of ``data``).

    Raises ImageRejected, DocumentRejected or SourceRejected with the reason."""
    _check_size(data)
    if is_pdf(data):
        return _prepare_pdf(data, sha256=sha256, source=source, original_name=original_name, label=label)
    decoded = decode_image(
        data,
        max_pixels=settings.IMAGE_MAX_PIXELS,
        max_pages=settings.IMAGE_MAX_PAGES,
        thumbnail_size=settings.THUMBNAIL_SIZE,
    )
    prepared = _new_prepared(sha256=sha256, source=source, original_name=original_name, label=label)
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


def _pdf_options() -> PdfOptions:
    return PdfOptions(
        min_image_side=settings.DOCUMENT_MIN_IMAGE_SIDE,
        render_dpi=settings.DOCUMENT_RENDER_DPI,
        render_all_pages=settings.DOCUMENT_RENDER_ALL_PAGES,
        vector_figures=settings.DOCUMENT_VECTOR_FIGURES,
        repeated_image_pages=settings.DOCUMENT_REPEATED_IMAGE_PAGES,
        repeated_image_share=settings.DOCUMENT_REPEATED_IMAGE_SHARE,
        max_pages=settings.DOCUMENT_MAX_PAGES,
        max_pixels=settings.IMAGE_MAX_PIXELS,
    )


def _prepare_pdf(data: bytes, *, sha256: str, source: str, original_name: str, label: str) -> _Prepared:
    """A PDF: the document itself and each picture taken from it (``imagesearch.documents``),
    stored as they come, so that only one picture at a time is in memory."""
    prepared = _new_prepared(sha256=sha256, source=source, original_name=original_name, label=label)
    try:
        with PdfPictures(data, _pdf_options()) as pdf:
            original = storage.original_name(sha256, ".pdf")
            _store(prepared, original, data)
            seen: set[str] = set()
            for picture in pdf:
                try:
                    stored = _stored_pdf_picture(prepared, picture)
                except ImageRejected as exc:
                    prepared.warnings.append(f"page {picture.page_number}: an image was left out ({exc})")
                    continue
                if stored.sha256 not in seen:  # two renders can come out the same
                    seen.add(stored.sha256)
                    prepared.images.append(stored)
            page_sizes, skipped = pdf.page_sizes, dict(pdf.skipped)
            prepared.warnings = pdf.page_errors + prepared.warnings
    except BaseException:
        _remove_unreferenced(prepared.created_files)
        raise
    prepared.document = {
        "title": Path(prepared.original_name).stem or prepared.original_name,
        "media_type": PDF_MEDIA_TYPE,
        "page_count": len(page_sizes),
        "page_sizes": page_sizes,
        "file": original,
        "file_size": len(data),
        "metadata": {"skipped": skipped, "page_errors": prepared.warnings[:100]},
    }
    return prepared


def _stored_pdf_picture(prepared: _Prepared, picture: PdfPicture) -> _PreparedImage:
    if picture.jpeg is not None:
        # its header checked now; decoded when first shown (library.thumbnail_ensure)
        width, height = check_jpeg(picture.jpeg, max_pixels=settings.IMAGE_MAX_PIXELS)
        page = DecodedPage(width=width, height=height, thumbnail=b"")
        file_bytes, extension, fmt, media_type = picture.jpeg, ".jpg", "JPEG", "image/jpeg"
    else:
        page = encode_pixels(picture.pixels, max_pixels=settings.IMAGE_MAX_PIXELS,
                             thumbnail_size=settings.THUMBNAIL_SIZE)
        file_bytes, extension, fmt, media_type = page.page_png, ".png", "PNG", "image/png"
    image_sha = picture.sha256 or hashlib.sha256(file_bytes).hexdigest()
    return _stored_picture(prepared, page, file_bytes, image_sha, extension, fmt, media_type,
                           page_number=picture.page_number, bbox=picture.bbox, metadata={"kind": picture.kind})


def _stored_picture(
    prepared: _Prepared, page: DecodedPage, file_bytes: bytes, sha256: str, extension: str, fmt: str,
    media_type: str, **fields,
) -> _PreparedImage:
    file_name, thumb = storage.original_name(sha256, extension), storage.thumbnail_name(sha256)
    _store(prepared, file_name, file_bytes)
    if page.thumbnail:
        _store(prepared, thumb, page.thumbnail)
    return _PreparedImage(
        sha256=sha256, file_name=file_name, thumbnail_name=thumb, file_size=len(file_bytes),
        width=page.width, height=page.height, format=fmt, media_type=media_type, **fields,
    )


def _prepare_document(prepared: _Prepared, decoded: DecodedImage, original: str, size: int) -> dict:
    for page in decoded.pages:
        page_sha = hashlib.sha256(page.page_png).hexdigest()
        prepared.images.append(_stored_picture(
            prepared, page, page.page_png, page_sha, ".png", "PNG", "image/png", page_number=page.page_number,
            metadata={"kind": "page"},
        ))
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


def _image_rows(prepared: _Prepared, *, collection_id: int, job_id: int | None) -> list[Image]:
    return [
        Image(
            collection_id=collection_id, page_number=p.page_number, bbox=list(p.bbox) if p.bbox else None,
            file=p.file_name, thumbnail=p.thumbnail_name, sha256=p.sha256, file_size=p.file_size,
            width=p.width, height=p.height, format=p.format, media_type=p.media_type,
            original_name=prepared.original_name, source_path=prepared.source, label=prepared.label,
            metadata=p.metadata, ingest_job_id=job_id,
        )
        for p in prepared.images
    ]


def _document_row(prepared: _Prepared, *, collection_id: int, job_id: int | None) -> Document:
    return Document(
        collection_id=collection_id, sha256=prepared.sha256, original_name=prepared.original_name,
        source_path=prepared.source, ingest_job_id=job_id, **prepared.document,
    )


def _insert_all(prepared_items: list[_Prepared], *, collection_id: int, job_id: int | None) -> list[IngestOutcome]:
    """Insert the rows of a chunk's items: all documents in one statement and all pictures in
    another, when nothing collides; otherwise item by item (``_insert``), each in a savepoint.

    A picture already in the library (a page of another document, a blank page, a logo)
    stays where it is, and the document's other pictures go in.
    """
    if not prepared_items:
        return []
    known = _shas_in_library([p.sha256 for item in prepared_items for p in item.images])
    try:
        with transaction.atomic():
            documents = [_document_row(item, collection_id=collection_id, job_id=job_id)
                         for item in prepared_items if item.document is not None]
            Document.objects.bulk_create(documents)
            by_item = iter(documents)
            rows_per_item = []
            for item in prepared_items:
                document = next(by_item) if item.document is not None else None
                rows = [row for row in _image_rows(item, collection_id=collection_id, job_id=job_id)
                        if row.sha256 not in known]
                for row in rows:
                    row.document = document
                rows_per_item.append((item, document, rows))
            Image.objects.bulk_create([row for _item, _document, rows in rows_per_item for row in rows])
    except (IntegrityError, DataError):
        # Another worker committed some of these bytes meanwhile (its rows own them), or one item
        # holds a value its columns refuse: item by item, so that only that one fails.
        return [_insert(item, collection_id=collection_id, job_id=job_id) for item in prepared_items]
    return [
        IngestOutcome(item.source, IMPORTED, image_ids=[row.pk for row in rows],
                      document_id=document.pk if document else None, warnings=item.warnings)
        for item, document, rows in rows_per_item
    ]


def _shas_in_library(shas: list[str]) -> set[str]:
    return set(Image.objects.filter(sha256__in=shas).values_list("sha256", flat=True)) if shas else set()


def _insert(prepared: _Prepared, *, collection_id: int, job_id: int | None) -> IngestOutcome:
    """Insert the rows of one prepared item in a savepoint; a conflict on its own hash is a duplicate."""
    rows = _image_rows(prepared, collection_id=collection_id, job_id=job_id)
    try:
        with transaction.atomic():
            if prepared.document is None:
                image_ids = [row.pk for row in Image.objects.bulk_create(rows)]
                document_id = None
            else:
                document = _document_row(prepared, collection_id=collection_id, job_id=job_id)
                document.save()
                for row in rows:
                    row.document = document
                Image.objects.bulk_create(rows, ignore_conflicts=True)  # see _insert_all
                image_ids = list(document.images.order_by("pk").values_list("pk", flat=True))
                document_id = document.pk
    except IntegrityError:
        # Another worker committed the same bytes first: its rows own these files.
        return IngestOutcome(prepared.source, DUPLICATE, "already in the library")
    except DataError as exc:
        # a value the checks before let through (a bug): this file fails, not the files beside it
        logger.exception("could not store %s", prepared.source)
        transaction.on_commit(lambda: _remove_unreferenced(prepared.created_files))
        return IngestOutcome(prepared.source, FAILED, NOT_STORED.format(detail=exc))
    return IngestOutcome(
        prepared.source, IMPORTED, image_ids=image_ids, document_id=document_id, warnings=prepared.warnings,
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
        prepared = _prepare(data, sha256=sha256, source=source, original_name=original_name, label=label)
    except (ImageRejected, DocumentRejected, SourceRejected) as exc:
        return IngestOutcome(source, FAILED, str(exc))
    except DatabaseError:
        raise
    except Exception as exc:  # a decoder bug on a hostile file must not become a server error
        logger.exception("unexpected error importing %s", source)
        return IngestOutcome(source, FAILED, f"could not read file ({type(exc).__name__}: {exc})")
    try:
        with transaction.atomic():
            outcome = _insert(prepared, collection_id=collection.pk, job_id=None)
            images_added.send(sender=Image, image_ids=outcome.image_ids)
    except BaseException:
        _remove_unreferenced(prepared.created_files)
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
) -> Job:
    """List the sources under ``paths`` and split them into chunks of one job: documents
    (PDFs) whole, a few small ones or one large one a chunk (``_document_chunks``), other
    files ``chunk_size`` at a time.

    Paths that yield nothing (missing, unreadable archives) are recorded as issues.
    ``upload_dir``: a folder of uploaded files, removed when the job has finished.
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
            kind=IMPORT_JOB_KIND,
            total=total,
            created_by=created_by,
            params={
                "paths": [name_as_text(path) for path in paths],
                "collection_id": collection.pk,
                "collection": collection.name,
                "label_from_folder": label_from_folder,
                "unreadable_paths": len(problems),
                "upload_dir": upload_dir,
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
    committed = False
    # the job's bar moves while the chunk runs, not only when it commits (one chunk can be the whole import)
    report = job_part_reporter(job_id=job.pk, part=_part(chunk), size=len(chunk.items),
                               pending=IngestChunk.objects.filter(pk=chunk.pk, status=IngestChunk.Status.PENDING))
    try:
        for done, raw in enumerate(chunk.items, 1):
            result = _prepare_source(SourceItem.from_json(raw), label=job.params.get("label", ""))
            (prepared_items if isinstance(result, _Prepared) else outcomes).append(result)
            report(done)
        committed = _commit_chunk(chunk_id, prepared_items, outcomes, collection_id=collection_id)
    finally:
        if not committed:
            for prepared in prepared_items:
                _remove_unreferenced(prepared.created_files)


def _part(chunk: IngestChunk) -> str:
    """The chunk's name in its job's progress (``jobs.job_report_part``)."""
    return f"chunk {chunk.index}"


def _prepare_source(item: SourceItem, *, label: str = "") -> _Prepared | IngestOutcome:
    """``label``: the job's, for items that have none of their own (a folder's)."""
    try:
        data = read_source(item, max_bytes=_size_limit)
        sha256 = hashlib.sha256(data).hexdigest()
        if _already_stored(sha256):
            return IngestOutcome(item.display, DUPLICATE, "already in the library")
        return _prepare(data, sha256=sha256, source=item.display, original_name=item.name, label=item.label or label)
    except (SourceRejected, ImageRejected, DocumentRejected) as exc:
        return IngestOutcome(item.display, FAILED, str(exc))
    except DatabaseError:
        raise
    except Exception as exc:  # a decoder bug on a hostile file must not stop the import
        logger.exception("unexpected error importing %s", item.display)
        return IngestOutcome(item.display, FAILED, f"could not read file ({type(exc).__name__}: {exc})")


def _commit_chunk(
    chunk_id: int, prepared_items: list[_Prepared], outcomes: list[IngestOutcome], *, collection_id: int
) -> bool:
    """Commit the chunk's rows, counts and progress; False when nothing was committed."""
    with transaction.atomic():
        chunk = IngestChunk.objects.select_for_update().get(pk=chunk_id)
        # Locking the job row serialises chunk commits of one job, so exactly one
        # of them sees no pending chunk left and closes the job.
        job = Job.objects.select_for_update().get(pk=chunk.job_id)
        if chunk.status == IngestChunk.Status.DONE:
            return False  # a parallel run of this chunk finished first; its rows own the files
        if job.is_finished:
            return False  # the job failed or was cancelled while this chunk was read: none of it is kept
        outcomes.extend(_insert_all(prepared_items, collection_id=collection_id, job_id=job.pk))
        failures = [(o.source, o.message) for o in outcomes if o.status == FAILED]
        warnings = [(f"{o.source} ({w.split(':', 1)[0]})", w) for o in outcomes for w in o.warnings]
        added = [i for o in outcomes if o.status == IMPORTED for i in o.image_ids]
        images_added.send(sender=Image, image_ids=added)
        chunk.imported = sum(len(o.image_ids) for o in outcomes if o.status == IMPORTED)
        chunk.documents = sum(1 for o in outcomes if o.status == IMPORTED and o.document_id)
        chunk.duplicates = sum(1 for o in outcomes if o.status == DUPLICATE)
        chunk.failed = len(failures)
        chunk.status = IngestChunk.Status.DONE
        chunk.finished_at = timezone.now()
        chunk.save(update_fields=["imported", "documents", "duplicates", "failed", "status", "finished_at"])
        job_record_issues(job_id=job.pk, issues=failures + warnings)
        job_advance(job_id=job.pk, done=len(chunk.items), part=_part(chunk))  # replaces what it reported
        if IngestChunk.objects.filter(job_id=job.pk, status=IngestChunk.Status.PENDING).exists():
            _record_running_totals(job, chunk)
        else:
            result = _job_result(job.pk, job.params.get("unreadable_paths", 0))
            job_finish(job_id=job.pk, message=_summary(result), result=result)
            params = dict(job.params)
            transaction.on_commit(lambda: _remove_upload_dir(params))
            import_finished.send(sender=Job, job_id=job.pk, imported=result["imported"])
    return True


def _record_running_totals(job: Job, chunk: IngestChunk) -> None:
    """Add a chunk's counts to the job's running totals (the caller holds the job's row lock),
    so the UI shows documents and images done and the image rate while the job runs."""
    # read again: job_advance has just changed it (the other chunks' progress under way)
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
