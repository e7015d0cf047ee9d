"""Reads of the image library and jobs, shared by pages, the API and commands."""

from __future__ import annotations

from django.db.models import QuerySet

from imagesearch.models import Collection, Document, Image, Job


def image_list(
    *, collection_id: int | None = None, document_id: int | None = None, label: str | None = None
) -> QuerySet[Image]:
    images = Image.objects.select_related("collection", "document")
    if collection_id:
        images = images.filter(collection_id=collection_id)
    if document_id:
        images = images.filter(document_id=document_id)
    if label:
        images = images.filter(label=label)
    return images


def label_list(*, collection_id: int | None = None, limit: int = 500) -> list[str]:
    labels = Image.objects.exclude(label="")
    if collection_id:
        labels = labels.filter(collection_id=collection_id)
    return list(labels.order_by("label").values_list("label", flat=True).distinct()[:limit])


def collection_list() -> QuerySet[Collection]:
    return Collection.objects.all()


def document_images(*, document: Document) -> QuerySet[Image]:
    return document.images.order_by("page_number", "id")


def job_list(*, kind: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.select_related("created_by")
    return jobs.filter(kind=kind) if kind else jobs
