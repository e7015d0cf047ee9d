"""Library pages: the thumbnail grid, image and document details, document imports, stored files."""

from __future__ import annotations

import mimetypes
import os

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, SuspiciousFileOperation
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.utils._os import safe_join
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from pypdfium2 import PdfiumError

from imagesearch import selectors, storage
from imagesearch.api.serializers import ImportJobOutputSerializer
from imagesearch.documents import DocumentRejected
from imagesearch.imaging import ImageRejected
from imagesearch.models import Document, Image
from imagesearch.params import InvalidParameter, int_param, text_param
from imagesearch.services.documents import document_page_preview, document_read_again, document_upload
from imagesearch.services.library import DEFAULT_COLLECTION
from imagesearch.services.library import thumbnail_ensure

IMAGES_PER_PAGE = 60
DOCUMENTS_PER_PAGE = 50
DOCUMENT_PAGES_PER_SCREEN = 20


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
    collection_id = int_param(request.GET, "collection")
    document_id = int_param(request.GET, "document")
    label = text_param(request.GET, "label", max_length=200)
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
    return render(request, "imagesearch/image_detail.html", {
        "image": image, "source": selectors.server_paths_for(user=request.user, value=image.source_path)})


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_http_methods(["GET", "POST"])
def document_list(request: HttpRequest) -> HttpResponse:
    """The documents of the library, and (for those allowed) uploading more to import."""
    if request.method == "POST":
        if not request.user.has_perm("imagesearch.add_document"):
            raise PermissionDenied
        files = request.FILES.getlist("files")
        if not files:
            messages.error(request, "Choose one or more files to import.")
        else:
            collection = text_param(request.POST, "collection", max_length=200) or DEFAULT_COLLECTION
            job = document_upload(files=files, collection_name=collection, created_by=request.user)
            messages.success(request, f"Import #{job.pk} started: {job.message}. Its progress is shown below.")
        return redirect("document-list")
    collection_id = int_param(request.GET, "collection")
    query = text_param(request.GET, "q")
    page = Paginator(selectors.document_list(collection_id=collection_id, query=query), DOCUMENTS_PER_PAGE
                     ).get_page(request.GET.get("page"))
    counts = selectors.document_image_counts(document_ids=[d.pk for d in page.object_list])
    filter_query = request.GET.copy()
    filter_query.pop("page", None)
    return render(request, "imagesearch/document_list.html", {
        "page": page,
        "rows": [(d, counts.get(d.pk, 0)) for d in page.object_list],
        "collections": selectors.collection_list(),
        "selected": {"collection": collection_id, "q": query},
        "filter_query": filter_query.urlencode(),
        # as the API gives them (and jobs.js updates them): server paths for admins only
        "imports": ImportJobOutputSerializer(selectors.import_jobs(user=request.user), many=True,
                                             context={"request": request}).data,
        "can_upload": request.user.has_perm("imagesearch.add_document"),
    })


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def document_detail(request: HttpRequest, document_id: int) -> HttpResponse:
    """A document's pages that hold library images, each with a preview showing where they are."""
    document = get_object_or_404(Document.objects.select_related("collection"), pk=document_id)
    all_pages = request.GET.get("all") == "1"
    pages = selectors.document_pages(document=document, all_pages=all_pages)
    page_number = int_param(request.GET, "page")
    # a link to page N opens the screen of pages that holds it
    screen = request.GET.get("screen")
    if page_number and not screen:
        position = next((i for i, p in enumerate(pages) if p.number >= page_number), 0)
        screen = position // DOCUMENT_PAGES_PER_SCREEN + 1
    paginated = Paginator(pages, DOCUMENT_PAGES_PER_SCREEN).get_page(screen)
    return render(request, "imagesearch/document_detail.html", {
        "document": document,
        "pages": paginated,
        "page_links": [(p.number, i // DOCUMENT_PAGES_PER_SCREEN + 1) for i, p in enumerate(pages)],
        "page_number": page_number,
        "all_pages": all_pages,
        "image_count": sum(len(p.images) for p in pages),
        "skipped": (document.metadata or {}).get("skipped", {}),
        "read_again_with": [READ_AGAIN_NAMES.get(n, n) for n in (document.metadata or {}).get("read_again_with", [])],
        "render_dpi": settings.DOCUMENT_RENDER_DPI,
        "page_errors": (document.metadata or {}).get("page_errors", []),
    })


READ_AGAIN_NAMES = {"vector_figures": "its vector figures", "render_all_pages": "every page rendered"}


@login_required
@permission_required("imagesearch.add_document", raise_exception=True)
@require_POST
def document_read_again_view(request: HttpRequest, document_id: int) -> HttpResponse:
    """Import a document's pictures again with what its first import left out (vector figures, whole pages)."""
    document = get_object_or_404(Document.objects.select_related("collection"), pk=document_id)
    try:
        job = document_read_again(document=document, what=request.POST.get("what", ""), created_by=request.user)
    except DocumentRejected as exc:
        messages.error(request, str(exc))
        return redirect("document-detail", document_id=document.pk)
    messages.success(request, f"Import #{job.pk} reads “{document.title}” again; its progress is shown below, "
                              "and its new pictures join the document.")
    return redirect("document-list")


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def document_page_image(request: HttpRequest, document_id: int, page_number: int) -> FileResponse:
    """A preview of one page (rendered once, then served from the store)."""
    document = get_object_or_404(Document, pk=document_id)
    try:
        name = document_page_preview(document=document, page_number=page_number)
        response = FileResponse(open(storage.media_path(name), "rb"), content_type="image/webp")
    except (DocumentRejected, FileNotFoundError) as exc:
        raise Http404(str(exc)) from None
    except (PdfiumError, ValueError, OSError):
        raise Http404("This page could not be rendered.") from None
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def document_download(request: HttpRequest, document_id: int) -> FileResponse:
    """The original document file, under its original name (analysts and admins only)."""
    document = get_object_or_404(Document, pk=document_id)
    if not document.file:
        raise Http404("This document has no stored file.")
    try:
        handle = open(storage.media_path(document.file.name), "rb")
    except FileNotFoundError:
        raise Http404("The document's file is missing from the store.") from None
    return FileResponse(handle, as_attachment=True, filename=document.original_name or document.file.name,
                        content_type=document.media_type or None)


def _is_library_image_file(name: str) -> bool:
    """Whether ``name`` is an image's file or thumbnail (names hold the content's hash)."""
    top, _, rest = name.partition("/")
    sha256 = rest.rsplit("/", 1)[-1].split(".")[0]
    return top in ("originals", "thumbs") and Image.objects.filter(sha256=sha256).exists()


@login_required
@require_GET
def media_file(request: HttpRequest, name: str) -> FileResponse:
    """Serve a stored file to labelers and analysts; names are content hashes, so cache forever.

    Downloads under the original name are for analysts only: a file name often gives
    away what a labeler is asked to judge by eye.
    """
    can_search = request.user.has_perm("imagesearch.search")
    download = bool(request.GET.get("download"))
    if not (can_search or request.user.has_perm("labeling.label")) or (download and not can_search):
        raise PermissionDenied
    if "\x00" in name:  # no stored name holds one; the database and open() would both fail on it
        raise Http404("No such file.")
    if not can_search and not _is_library_image_file(name):
        raise PermissionDenied  # labelers see the pictures they judge, not documents or their pages
    download_name = ""
    if download:
        image = Image.objects.filter(file=name).only("original_name").first()
        download_name = image.original_name if image else name.rsplit("/", 1)[-1]
    try:
        path = safe_join(settings.MEDIA_ROOT, name)
        if name.startswith("thumbs/") and not os.path.exists(path):
            thumbnail_ensure(name=name)  # made when first shown (images taken from documents)
        # FileResponse writes Content-Disposition as RFC 6266 says: any name, quotes and newlines included
        response = FileResponse(open(path, "rb"), content_type=mimetypes.guess_type(path)[0],
                                as_attachment=download, filename=download_name)
    except (FileNotFoundError, IsADirectoryError, PermissionError, SuspiciousFileOperation, ImageRejected,
            OSError):
        raise Http404("No such file.") from None
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 400 page; for a parameter that cannot mean anything it says which, in the site's layout.

    Anything else that ends here (a disallowed host, a suspicious session) gets the page
    without the request, as Django's own handler does: rendering with it could fail again.
    """
    if isinstance(exception, InvalidParameter):
        return render(request, "400.html", {"message": str(exception)}, status=400)
    return HttpResponseBadRequest(loader.get_template("400.html").render())
