"""Writing an import's rows: the Image and Document rows of prepared items (``import_files``), all of
a chunk's in two statements when nothing collides, item by item in savepoints when something does.
Images are unique by SHA-256: bytes another worker committed first are a duplicate, and its rows own
the files. A document's picture already in the library is not imported again: it gets an occurrence
(``ImageOccurrence``) in the new document."""

from __future__ import annotations

import logging

from django.db import DataError, IntegrityError, transaction

from imagesearch.models import Document, Image, ImageOccurrence
from imagesearch.services.import_files import (
    ALREADY_STORED, DUPLICATE, FAILED, IMPORTED, IngestOutcome, PreparedItem, files_remove_unreferenced,
)

logger = logging.getLogger(__name__)

NOT_STORED = "could not be stored ({detail})"


def _image_rows(prepared: PreparedItem, *, collection_id: int, job_id: int | None) -> list[Image]:
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


def _document_row(prepared: PreparedItem, *, collection_id: int, job_id: int | None) -> Document:
    return Document(
        collection_id=collection_id, sha256=prepared.sha256, original_name=prepared.original_name,
        source_path=prepared.source, ingest_job_id=job_id, **prepared.document,
    )


def rows_insert(prepared_items: list[PreparedItem], *, collection_id: int, job_id: int | None,
                into_document_id: int | None = None, read_with: dict | None = None) -> list[IngestOutcome]:
    """Insert the rows of a chunk's items: all documents in one statement and all pictures in
    another, when nothing collides; otherwise item by item (``rows_insert_item``), each in a savepoint.

    A picture already in the library (a page of another document, a blank page, a logo)
    stays where it is, and the document's other pictures go in. ``into_document_id``: the items are
    that library document read again with the options ``read_with`` (``rows_insert_into_document``).
    """
    if not prepared_items:
        return []
    if into_document_id is not None:
        return [rows_insert_into_document(item, document_id=into_document_id, job_id=job_id, read_with=read_with)
                for item in prepared_items]
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
            _occurrences_insert([(item, document) for item, document, _rows in rows_per_item if document])
    except (IntegrityError, DataError):
        # Another worker committed some of these bytes meanwhile (its rows own them), or one item
        # holds a value its columns refuse: item by item, so that only that one fails.
        return [rows_insert_item(item, collection_id=collection_id, job_id=job_id) for item in prepared_items]
    return [
        IngestOutcome(item.source, IMPORTED, image_ids=[row.pk for row in rows],
                      document_id=document.pk if document else None, warnings=item.warnings)
        for item, document, rows in rows_per_item
    ]


def rows_insert_into_document(prepared: PreparedItem, *, document_id: int, job_id: int | None,
                              read_with: dict | None = None) -> IngestOutcome:
    """A library document read again with other options (``read_with``: its vector figures, its pages rendered):
    the pictures new to the library join it, those already there get an occurrence in it, and its record of
    what was left out is the new reading's."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document_id)
        known = _shas_in_library([p.sha256 for p in prepared.images])
        rows = [row for row in _image_rows(prepared, collection_id=document.collection_id, job_id=job_id)
                if row.sha256 not in known]
        for row in rows:
            row.document = document
            row.original_name = document.original_name
        Image.objects.bulk_create(rows, ignore_conflicts=True)  # bytes another worker committed: theirs
        _occurrences_insert([(prepared, document)])
        metadata = {**(document.metadata or {}), **(prepared.document or {}).get("metadata", {}),
                    "read_again_with": sorted(name for name, on in (read_with or {}).items() if on)}
        Document.objects.filter(pk=document.pk).update(metadata=metadata)
        image_ids = list(Image.objects.filter(sha256__in=[row.sha256 for row in rows], document=document)
                         .order_by("pk").values_list("pk", flat=True))
    return IngestOutcome(prepared.source, IMPORTED, image_ids=image_ids, document_id=document.pk,
                         warnings=prepared.warnings)


def _occurrences_insert(documents: list[tuple[PreparedItem, Document]]) -> None:
    """Where each document's pictures appear, the ones already in the library (from another document, or
    imported alone) included: a shared picture is one image with an occurrence in each document."""
    shas = {picture.sha256 for item, _document in documents for picture in item.images}
    if not shas:
        return
    ids = dict(Image.objects.filter(sha256__in=shas).values_list("sha256", "pk"))
    ImageOccurrence.objects.bulk_create(
        [ImageOccurrence(image_id=ids[picture.sha256], document=document, page_number=picture.page_number or 1,
                         bbox=list(picture.bbox) if picture.bbox else None)
         for item, document in documents for picture in item.images if picture.sha256 in ids],
        ignore_conflicts=True)  # the same picture twice on a page: its first place


def _shas_in_library(shas: list[str]) -> set[str]:
    return set(Image.objects.filter(sha256__in=shas).values_list("sha256", flat=True)) if shas else set()


def rows_insert_item(prepared: PreparedItem, *, collection_id: int, job_id: int | None) -> IngestOutcome:
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
                Image.objects.bulk_create(rows, ignore_conflicts=True)  # see rows_insert
                _occurrences_insert([(prepared, document)])
                image_ids = list(document.images.order_by("pk").values_list("pk", flat=True))
                document_id = document.pk
    except IntegrityError:
        # Another worker committed the same bytes first: its rows own these files.
        return IngestOutcome(prepared.source, DUPLICATE, ALREADY_STORED)
    except DataError as exc:
        # a value the checks before let through (a bug): this file fails, not the files beside it
        logger.exception("could not store %s", prepared.source)
        transaction.on_commit(lambda: files_remove_unreferenced(prepared.created_files))
        return IngestOutcome(prepared.source, FAILED, NOT_STORED.format(detail=exc))
    return IngestOutcome(
        prepared.source, IMPORTED, image_ids=image_ids, document_id=document_id, warnings=prepared.warnings,
    )
