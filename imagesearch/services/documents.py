"""Documents: uploads that become import jobs, and page previews rendered on demand."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from imagesearch import storage
from imagesearch.documents import DocumentRejected, render_page_preview
from imagesearch.imaging import open_for_display
from imagesearch.models import Document, Job
from imagesearch.services.ingest import ingest_job_create, ingest_job_run
from imagesearch.services.library import DEFAULT_COLLECTION

PREVIEW_QUALITY = 80
_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")


def document_upload(
    *, files: list[UploadedFile], collection_name: str = DEFAULT_COLLECTION, label_from_folder: bool = False,
    created_by: AbstractBaseUser | None = None,
) -> Job:
    """Keep the uploaded files (PDFs, scans, images, .zip archives of them) until their import job,
    run by the Celery workers a document per task, has stored them; returns that job."""
    folder = settings.DOCUMENT_UPLOAD_DIR / uuid.uuid4().hex
    folder.mkdir(parents=True)
    for upload in files:
        with open(_unused_path(folder, upload.name or "upload"), "wb") as out:
            for part in upload.chunks():
                out.write(part)
    with transaction.atomic():
        job = ingest_job_create(
            paths=[folder], collection_name=collection_name, label_from_folder=label_from_folder,
            created_by=created_by, upload_dir=str(folder),
        )
        ingest_job_run(job_id=job.pk)
    return job


READ_AGAIN_CHOICES = {
    "figures": {"vector_figures": True},  # regions of dense vector drawing, rendered
    "pages": {"render_all_pages": True},  # every page rendered as a picture
}
NOT_A_PDF = "Only a PDF is read again: a scan's pages are its pictures already."


def document_read_again(*, document: Document, what: str, created_by: AbstractBaseUser | None = None,
                        dispatch: bool = True) -> Job:
    """Import the document's pictures again with what the first import left out: its vector figures
    (``what="figures"``) or its pages rendered whole (``"pages"``). Its new pictures join it; the job
    shows on the documents page like any import."""
    if what not in READ_AGAIN_CHOICES:
        raise DocumentRejected(f"Read a document again for its figures or its pages, not {what!r}.")
    if not document.is_pdf or not document.file:
        raise DocumentRejected(NOT_A_PDF)
    path = storage.media_path(document.file.name)
    if not path.exists():
        raise DocumentRejected("The document's file is missing from the store.")
    with transaction.atomic():
        job = ingest_job_create(paths=[path], collection_name=document.collection.name, created_by=created_by,
                                pdf_options=READ_AGAIN_CHOICES[what], into_document_id=document.pk)
        if dispatch:
            ingest_job_run(job_id=job.pk)  # queued when this commits
    if not dispatch:
        ingest_job_run(job_id=job.pk, inline=True)
    return job


def _unused_path(folder: Path, name: str) -> Path:
    """A path in ``folder`` for an uploaded file under its own (sanitised) name: "a (2).pdf" for a second "a.pdf"."""
    name = _UNSAFE_NAME.sub("_", Path(name).name).strip(". ") or "upload"
    path, stem, suffix = folder / name, Path(name).stem, Path(name).suffix
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stem} ({n}){suffix}"
    return path


def document_page_preview(*, document: Document, page_number: int, width: int | None = None) -> str:
    """The stored name of a WebP preview of one page, rendered the first time it is asked for.

    Raises DocumentRejected when the page does not exist or cannot be rendered."""
    width = width or settings.DOCUMENT_PREVIEW_WIDTH
    name = f"previews/{document.sha256[:2]}/{document.sha256}/{page_number}-{width}.webp"
    if storage.media_path(name).exists():
        return name
    if not 1 <= page_number <= document.page_count:
        raise DocumentRejected(f"no page {page_number} in this document")
    if document.is_pdf:
        picture = render_page_preview(str(storage.media_path(document.file.name)), page_number, width=width)
    else:
        # a multi-page scan: its pages are library images already
        page = document.images.filter(page_number=page_number).first()
        if page is None:
            raise DocumentRejected(f"page {page_number} of this document is not in the library")
        picture = open_for_display(storage.media_path(page.file.name).read_bytes())
        picture.thumbnail((width, width * 4))
    out = io.BytesIO()
    picture.save(out, format="WEBP", quality=PREVIEW_QUALITY)
    storage.store_bytes(name, out.getvalue())
    return name
