"""Preparing an import's files: a source's bytes read, checked, decoded, thumbnailed and stored, so
that its rows can be written (``import_rows``). Each file is written before its row is committed
(no row without its file); files written for an item that then fails are removed again
(``files_remove_unreferenced``), and ``library.media_sweep_orphans`` removes those a killed process
could not. Bad input is an outcome (FAILED, with the reason), never an exception."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q

from imagesearch import storage
from imagesearch.documents import PDF_MEDIA_TYPE, DocumentRejected, PdfOptions, PdfPicture, PdfPictures, is_pdf
from imagesearch.imaging import DecodedImage, DecodedPage, ImageRejected, check_jpeg, decode_image, encode_pixels
from imagesearch.models import Document, Image
from imagesearch.sources import HEAD_BYTES, TOO_LARGE, SourceItem, SourceRejected, name_as_text, read_source

logger = logging.getLogger(__name__)

IMPORTED = "imported"
DUPLICATE = "duplicate"
FAILED = "failed"
QUEUED = "queued"  # an upload left to an import job

NAME_SHORTENED = "{what}: shortened to {limit} characters (it had {length})"
ALREADY_STORED = "already in the library"


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
class PreparedImage:
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
class PreparedItem:
    """An item whose files are written and whose rows are ready to insert."""

    source: str
    original_name: str
    label: str
    sha256: str
    images: list[PreparedImage]
    document: dict | None = None  # for documents and multi-page files: the Document's fields
    created_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def bytes_in_library(sha256: str) -> bool:
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


def _new_prepared(*, sha256: str, source: str, original_name: str, label: str) -> PreparedItem:
    """An item with its names as the library stores them: valid text (``name_as_text``), shortened
    to fit their columns, which the item's warnings say, rather than failing the whole chunk."""
    warnings: list[str] = []
    return PreparedItem(
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


def prepared_from_bytes(data: bytes, *, sha256: str, source: str, original_name: str, label: str,
                        pdf_options: dict | None = None) -> PreparedItem:
    """Decode and store the files of one source (``sha256`` of ``data``). ``pdf_options``: a job's own
    choices (``PDF_JOB_OPTIONS``) over the settings' for a PDF.

    Raises ImageRejected, DocumentRejected or SourceRejected with the reason."""
    _check_size(data)
    if is_pdf(data):
        return _prepare_pdf(data, sha256=sha256, source=source, original_name=original_name, label=label,
                            options=_pdf_options(pdf_options))
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
                PreparedImage(
                    sha256=sha256, file_name=original, thumbnail_name=thumb, file_size=len(data),
                    width=page.width, height=page.height, format=decoded.format,
                    media_type=decoded.media_type,
                )
            )
    except BaseException:
        files_remove_unreferenced(prepared.created_files)
        raise
    return prepared


NO_PICTURES = ("no pictures: it holds no raster image to take (its figures are drawn as vectors); its page in the "
               "library offers to take its vector figures or its pages (or set DOCUMENT_VECTOR_FIGURES)")
# what an import job may choose for its PDFs over the settings (a re-import of a document with no pictures)
PDF_JOB_OPTIONS = ("render_all_pages", "vector_figures")


def _pdf_options(job_options: dict | None = None) -> PdfOptions:
    chosen = {name: bool(value) for name, value in (job_options or {}).items() if name in PDF_JOB_OPTIONS}
    return PdfOptions(
        min_image_side=settings.DOCUMENT_MIN_IMAGE_SIDE,
        render_dpi=settings.DOCUMENT_RENDER_DPI,
        render_all_pages=chosen.get("render_all_pages", settings.DOCUMENT_RENDER_ALL_PAGES),
        vector_figures=chosen.get("vector_figures", settings.DOCUMENT_VECTOR_FIGURES),
        repeated_image_pages=settings.DOCUMENT_REPEATED_IMAGE_PAGES,
        repeated_image_share=settings.DOCUMENT_REPEATED_IMAGE_SHARE,
        max_pages=settings.DOCUMENT_MAX_PAGES,
        max_pixels=settings.IMAGE_MAX_PIXELS,
    )


def _prepare_pdf(data: bytes, *, sha256: str, source: str, original_name: str, label: str,
                 options: PdfOptions) -> PreparedItem:
    """A PDF: the document itself and each picture taken from it (``imagesearch.documents``),
    stored as they come, so that only one picture at a time is in memory."""
    prepared = _new_prepared(sha256=sha256, source=source, original_name=original_name, label=label)
    try:
        with PdfPictures(data, options) as pdf:
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
            page_errors = prepared.warnings[:100]
            if not prepared.images and not (options.vector_figures and options.render_all_pages):
                prepared.warnings.append(NO_PICTURES)  # the import's issue; the document's page says it too
    except BaseException:
        files_remove_unreferenced(prepared.created_files)
        raise
    prepared.document = {
        "title": Path(prepared.original_name).stem or prepared.original_name,
        "media_type": PDF_MEDIA_TYPE,
        "page_count": len(page_sizes),
        "page_sizes": page_sizes,
        "file": original,
        "file_size": len(data),
        "metadata": {"skipped": skipped, "page_errors": page_errors},
    }
    return prepared


def _stored_pdf_picture(prepared: PreparedItem, picture: PdfPicture) -> PreparedImage:
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
    prepared: PreparedItem, page: DecodedPage, file_bytes: bytes, sha256: str, extension: str, fmt: str,
    media_type: str, **fields,
) -> PreparedImage:
    file_name, thumb = storage.original_name(sha256, extension), storage.thumbnail_name(sha256)
    _store(prepared, file_name, file_bytes)
    if page.thumbnail:
        _store(prepared, thumb, page.thumbnail)
    return PreparedImage(
        sha256=sha256, file_name=file_name, thumbnail_name=thumb, file_size=len(file_bytes),
        width=page.width, height=page.height, format=fmt, media_type=media_type, **fields,
    )


def _prepare_document(prepared: PreparedItem, decoded: DecodedImage, original: str, size: int) -> dict:
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


def _store(prepared: PreparedItem, name: str, data: bytes) -> None:
    if storage.store_bytes(name, data):
        prepared.created_files.append(name)


def files_remove_unreferenced(names: list[str]) -> None:
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


def prepared_from_source(item: SourceItem, *, label: str = "", pdf_options: dict | None = None,
                         again: bool = False) -> PreparedItem | IngestOutcome:
    """``label``: the job's, for items that have none of their own (a folder's). ``again``: a document of the
    library read once more (with other ``pdf_options``), not a duplicate."""
    try:
        data = read_source(item, max_bytes=_size_limit)
        sha256 = hashlib.sha256(data).hexdigest()
        if not again and bytes_in_library(sha256):
            return IngestOutcome(item.display, DUPLICATE, ALREADY_STORED)
        return prepared_from_bytes(data, sha256=sha256, source=item.display, original_name=item.name,
                                   label=item.label or label, pdf_options=pdf_options)
    except (SourceRejected, ImageRejected, DocumentRejected) as exc:
        return IngestOutcome(item.display, FAILED, str(exc))
    except DatabaseError:
        raise
    except Exception as exc:  # a decoder bug on a hostile file must not stop the import
        logger.exception("unexpected error importing %s", item.display)
        return IngestOutcome(item.display, FAILED, f"could not read file ({type(exc).__name__}: {exc})")
