"""Reads of the image library, jobs and search, shared by pages, the API and commands."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from imagesearch.models import Collection, Document, Image, ImageOccurrence, Job
from imagesearch.services.query_uploads import SearchQuery
from ranking.models import ModelVersion, SimilarityCriterion
from ranking.selectors import (
    MAX_SEARCH_RESULTS,
    NoActiveVersion,
    SearchHit,
    active_version,
    nearest_images,
)
from ranking.query_encoder import upload_vector
from ranking.services.criteria import criterion_resolve


def image_list(
    *, collection_id: int | None = None, document_id: int | None = None, label: str | None = None
) -> QuerySet[Image]:
    images = Image.objects.select_related("collection", "document").prefetch_related("occurrences__document")
    if collection_id:
        images = images.filter(collection_id=collection_id)
    if document_id:  # every picture that appears in it, first found there or not
        images = images.filter(pk__in=ImageOccurrence.objects.filter(document_id=document_id).values("image_id"))
    if label:
        images = images.filter(label=label)
    return images


def label_list(*, collection_id: int | None = None, limit: int = 500) -> list[str]:
    labels = Image.objects.exclude(label="")
    if collection_id:
        labels = labels.filter(collection_id=collection_id)
    return list(labels.order_by("label").values_list("label", flat=True).distinct()[:limit])


def image_get(*, image_id: int) -> Image | None:
    return Image.objects.filter(pk=image_id).first()


def document_get(*, document_id: int | None) -> Document | None:
    return Document.objects.filter(pk=document_id).first() if document_id else None


def collection_list() -> QuerySet[Collection]:
    return Collection.objects.all()


def document_occurrences(*, document: Document) -> QuerySet[ImageOccurrence]:
    """Where the document's pictures appear in it (pictures shared with other documents included), in page order."""
    return (ImageOccurrence.objects.filter(document=document).select_related("image__document")
            .order_by("page_number", "image_id"))


def image_occurrences(*, image_ids: list[int]) -> dict[int, list[ImageOccurrence]]:
    """Every place each image appears (document, page, box), the document it was first found in first."""
    found: dict[int, list[ImageOccurrence]] = {}
    rows = (ImageOccurrence.objects.filter(image_id__in=image_ids).select_related("document", "image")
            .order_by("image_id", "created_at", "pk"))
    for occurrence in rows:
        found.setdefault(occurrence.image_id, []).append(occurrence)
    for occurrences in found.values():
        occurrences.sort(key=lambda o: o.document_id != o.image.document_id)  # stable: the rest in import order
    return found


def document_list(*, collection_id: int | None = None, query: str = "") -> QuerySet[Document]:
    documents = Document.objects.select_related("collection")
    if collection_id:
        documents = documents.filter(collection_id=collection_id)
    if query:
        documents = documents.filter(Q(title__icontains=query) | Q(original_name__icontains=query))
    return documents


def document_image_counts(*, document_ids: list[int]) -> dict[int, int]:
    """Pictures per document (shared ones counted in each), for one page of a document list (counting all
    documents would not scale)."""
    rows = (ImageOccurrence.objects.filter(document_id__in=document_ids).values("document_id")
            .annotate(n=Count("image_id", distinct=True)))
    return {row["document_id"]: row["n"] for row in rows}


@dataclass
class DocumentPage:
    number: int
    width: float  # points (0 when unknown)
    height: float
    images: list[Image]
    bboxes: dict[int, list[float] | None] = field(default_factory=dict)  # image id -> its box on this page

    def boxes(self) -> list[tuple[Image, dict]]:
        """Each image with its position on the page as CSS percentages, for the overlay."""
        if not (self.width and self.height):
            return []
        out = []
        for image in self.images:
            bbox = self.bboxes.get(image.pk)
            if bbox and (image.metadata or {}).get("kind") != "page":
                x0, y0, x1, y1 = bbox
                out.append((image, {
                    "left": round(100 * x0 / self.width, 3), "top": round(100 * y0 / self.height, 3),
                    "width": round(100 * (x1 - x0) / self.width, 3), "height": round(100 * (y1 - y0) / self.height, 3),
                }))
        return out


def document_pages(*, document: Document, all_pages: bool = False) -> list[DocumentPage]:
    """The document's pages that hold library images (every page with ``all_pages``), in order."""
    by_page: dict[int, list[Image]] = {}
    bboxes: dict[int, dict[int, list[float] | None]] = {}
    for occurrence in document_occurrences(document=document):
        by_page.setdefault(occurrence.page_number, []).append(occurrence.image)
        bboxes.setdefault(occurrence.page_number, {})[occurrence.image_id] = occurrence.bbox
    numbers = range(1, document.page_count + 1) if all_pages else sorted(by_page)
    sizes = document.page_sizes or []
    pages = []
    for number in numbers:
        width, height = sizes[number - 1] if number <= len(sizes) else (0.0, 0.0)
        pages.append(DocumentPage(number, width, height, by_page.get(number, []), bboxes.get(number, {})))
    return pages


def import_jobs(*, user: AbstractBaseUser, limit: int = 10) -> QuerySet[Job]:
    """Recent import jobs the user may follow: their own, or everybody's for admins."""

    jobs = job_list(kind=Job.Kind.IMPORT)
    if not user.has_perm("ranking.manage_models"):
        jobs = jobs.filter(created_by=user)
    return jobs[:limit]


def job_list(*, kind: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.select_related("created_by")
    return jobs.filter(kind=kind) if kind else jobs


# --- server paths -------------------------------------------------------------------------

# an absolute path's folders inside free text (not the "//host/a/" of a URL, nor the "1/2" of a fraction)
_SERVER_FOLDERS = re.compile(r"(?<![\w.:/~!-])/(?:[^/\s'\"!]+/)+")


def server_paths_visible(*, user: AbstractBaseUser | None) -> bool:
    """Whether ``user`` runs the server (staff, superuser, the admin role), so its paths mean something to them.

    To anybody else the folder of an upload or an import is no use, and a map of the machine.
    """
    return bool(user and user.is_authenticated
                and (user.is_staff or user.is_superuser or user.has_perm("ranking.manage_models")))


def server_paths_hidden(value):
    """``value`` (text, or a job's params: lists and dicts of them) with every absolute path cut to its
    last part: ``/srv/uploads/3f2a/report.pdf`` becomes ``report.pdf``, an archive member
    ``/srv/in/batch.zip!/a/b.pdf`` becomes ``batch.zip!/a/b.pdf``."""
    if isinstance(value, str):
        if os.path.isabs(value) and "\n" not in value:  # one path (whose folders may hold spaces)
            archive, inside, member = value.partition("!/")
            return (os.path.basename(archive.rstrip("/")) or archive) + inside + member
        return _SERVER_FOLDERS.sub("", value)
    if isinstance(value, list):
        return [server_paths_hidden(item) for item in value]
    if isinstance(value, dict):
        return {key: server_paths_hidden(item) for key, item in value.items()}
    return value


def server_paths_for(*, user: AbstractBaseUser | None, value):
    """``value`` as ``user`` may see it: whole for those who run the server, without its paths for others."""
    return value if server_paths_visible(user=user) else server_paths_hidden(value)


# --- search -------------------------------------------------------------------------------


class SearchRefused(ValueError):
    """The search cannot run as asked (no model yet, a version that cannot serve); the message says why."""


@dataclass
class SearchResults:
    criterion: SimilarityCriterion
    version: ModelVersion
    hits: list[SearchHit]
    offset: int
    has_more: bool  # another page exists (up to MAX_SEARCH_RESULTS)


def search_versions(*, criterion: SimilarityCriterion) -> QuerySet[ModelVersion]:
    """The criterion's versions that can answer a search: fully embedded and indexed, newest first."""
    return ModelVersion.objects.filter(
        criterion=criterion, status__in=[ModelVersion.Status.READY, ModelVersion.Status.ACTIVE]
    ).exclude(index_name="").order_by("-pk")


def search_version(*, criterion: SimilarityCriterion, version_id: int | None = None) -> ModelVersion:
    """The version to search with: the one asked for, else the criterion's active one."""
    if version_id is None:
        try:
            return active_version(criterion=criterion)
        except NoActiveVersion as exc:
            raise SearchRefused(str(exc)) from None
    version = search_versions(criterion=criterion).filter(pk=version_id).first()
    if version is None:
        raise SearchRefused(f"Version {version_id} of '{criterion}' cannot be searched: it does not exist, "
                            "belongs to another criterion, or is not fully embedded and indexed.")
    return version


def _upload_vector(version: ModelVersion, query: SearchQuery) -> np.ndarray:
    try:
        return upload_vector(version=version, token=query.token, path=query.path)
    except FileNotFoundError:
        raise SearchRefused("This query image is no longer kept; upload it again.") from None


def search_answer(
    *,
    query: SearchQuery,
    criterion: SimilarityCriterion | int | str | None = None,
    version_id: int | None = None,
    k: int = 40,
    offset: int = 0,
    collection_id: int | None = None,
    document_id: int | None = None,
    label: str | None = None,
    ef_search: int | None = None,
) -> SearchResults:
    """Where a search is answered: one page of the library images most similar to the query, for the
    search page, the API and ``manage.py search`` alike. The version is the criterion's active one
    unless ``version_id`` names another that can serve (``search_version``); an uploaded query is
    embedded once per version (``_upload_vector``); ``ranking.selectors.nearest_images`` asks the index."""
    try:
        criterion = criterion_resolve(criterion)
    except SimilarityCriterion.DoesNotExist:
        raise SearchRefused(f"No similarity criterion {criterion!r}.") from None
    version = search_version(criterion=criterion, version_id=version_id)
    vector = _upload_vector(version, query) if query.image_id is None else None
    # one more than asked tells whether there is a next page
    hits = nearest_images(version=version, image_id=query.image_id, vector=vector, k=k + 1, offset=offset,
                          collection_id=collection_id, document_id=document_id, label=label or None,
                          ef_search=ef_search)
    occurrences = image_occurrences(image_ids=[hit.image.pk for hit in hits[:k]])
    for hit in hits[:k]:
        hit.occurrences = occurrences.get(hit.image.pk, [])
    return SearchResults(criterion=criterion, version=version, hits=hits[:k], offset=offset,
                         has_more=len(hits) > k and offset + k < MAX_SEARCH_RESULTS)
