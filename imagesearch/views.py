"""Library pages: the thumbnail grid, image and document details, stored files."""

from __future__ import annotations

import mimetypes

from django.conf import settings
from django.core.exceptions import PermissionDenied, SuspiciousFileOperation
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils._os import safe_join
from django.views.decorators.http import require_GET

from imagesearch import selectors
from imagesearch.models import Document, Image

IMAGES_PER_PAGE = 60


def _int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Each role's own start page: analysts the library, labelers the labeling page."""
    if request.user.has_perm("imagesearch.search"):
        return redirect("image-list")
    if request.user.has_perm("labeling.label"):
        return redirect("label")
    return render(request, "imagesearch/no_role.html", status=403)


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def image_list(request: HttpRequest) -> HttpResponse:
    collection_id = _int_param(request, "collection")
    document_id = _int_param(request, "document")
    label = request.GET.get("label", "").strip()
    images = selectors.image_list(collection_id=collection_id, document_id=document_id, label=label or None)
    page = Paginator(images, IMAGES_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "imagesearch/image_list.html", {
        "page": page,
        "collections": selectors.collection_list(),
        "labels": selectors.label_list(collection_id=collection_id),
        "selected": {"collection": collection_id, "document": document_id, "label": label},
        "filter_query": query.urlencode(),
        "document": Document.objects.filter(pk=document_id).first() if document_id else None,
    })


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def image_detail(request: HttpRequest, image_id: int) -> HttpResponse:
    image = get_object_or_404(selectors.image_list(), pk=image_id)
    return render(request, "imagesearch/image_detail.html", {"image": image})


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def document_detail(request: HttpRequest, document_id: int) -> HttpResponse:
    document = get_object_or_404(Document.objects.select_related("collection"), pk=document_id)
    return render(request, "imagesearch/document_detail.html", {
        "document": document,
        "images": selectors.document_images(document=document),
        "page_number": _int_param(request, "page"),
    })


@login_required
@require_GET
def media_file(request: HttpRequest, name: str) -> FileResponse:
    """Serve a stored file to labelers and analysts; names are content hashes, so cache forever.

    Downloads under the original name are for analysts only: a file name often gives
    away what a labeler is asked to judge by eye.
    """
    can_search = request.user.has_perm("imagesearch.search")
    if not (can_search or request.user.has_perm("labeling.label")) or (request.GET.get("download") and not can_search):
        raise PermissionDenied
    try:
        path = safe_join(settings.MEDIA_ROOT, name)
        response = FileResponse(open(path, "rb"), content_type=mimetypes.guess_type(path)[0])
    except (FileNotFoundError, IsADirectoryError, PermissionError, SuspiciousFileOperation):
        raise Http404("No such file.") from None
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    if request.GET.get("download"):
        image = Image.objects.filter(file=name).only("original_name").first()
        download_name = image.original_name if image else name.rsplit("/", 1)[-1]
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    return response
