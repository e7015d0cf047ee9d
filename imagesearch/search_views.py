"""The search page: give a query image, see the most similar library images, mark them.

``GET /search/?image=ID`` (a library image) or ``?q=TOKEN`` (an upload kept
aside) renders the results; ``POST /search/`` with a file validates the upload
and redirects to its results, so every result page has an address that can be
reloaded, shared within the team and compared across model versions.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from pypdfium2 import PdfiumError

from imagesearch import selectors, storage
from imagesearch.documents import DocumentRejected
from imagesearch.imaging import ImageRejected
from imagesearch.models import Document
from imagesearch.params import InvalidParameter, int_param, text_param
from imagesearch.services.documents import document_page_preview
from imagesearch.services.library import collection_get_or_create
from imagesearch.services.query_uploads import (
    REGION_INVALID,
    QueryNotFound,
    SearchQuery,
    search_query_add_to_library,
    search_query_from_token,
    search_query_region,
    search_query_thumbnail_path,
    search_query_upload,
)
from labeling.selectors import search_feedback_marks
from ranking import selectors as ranking_selectors
from ranking.services.criteria import criterion_default

# the query-string parameters a search keeps when its query or one filter changes
KEPT_PARAMETERS = ("criterion", "version", "compare", "collection", "document", "label")


def _kept(params, **changes) -> str:
    kept = {name: params.get(name) for name in KEPT_PARAMETERS if params.get(name)}
    kept.update({name: value for name, value in changes.items() if value is not None})
    return urlencode(kept)


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_http_methods(["GET", "POST"])
def search(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _upload(request)
    query, error = _query_from(request)
    context = {"query": query, "error": error, "kept": _kept(request.GET), **_form_context(request),
               "query_image": selectors.image_list().filter(pk=query.image_id).first() if query and query.image_id
               else None}
    if query is None:
        return render(request, "imagesearch/search.html", context, status=404 if error else 200)
    # the picture a region of the query is drawn on
    context["region_picture_url"] = (reverse("media-file", args=[context["query_image"].displayable_name])
                                     if context["query_image"] else reverse("search-query-thumbnail", args=[query.token]))
    offset = min(int_param(request.GET, "offset", default=0), 999)
    filters = {"collection_id": context["selected"]["collection"], "document_id": context["selected"]["document"],
               "label": context["selected"]["label"] or None}
    criterion = context["criterion"]
    version_ids = [context["selected"]["version"]]
    if context["selected"]["compare"]:
        version_ids.append(context["selected"]["compare"])
    try:
        columns = [selectors.search_answer(query=query, criterion=criterion, version_id=version_id,
                                            k=settings.SEARCH_RESULTS_PER_PAGE, offset=offset, **filters)
                   for version_id in version_ids]
    except selectors.SearchRefused as exc:
        context["error"] = str(exc)
        return render(request, "imagesearch/search.html", context, status=400)
    if len(columns) == 2:  # results both versions found, for the comparison
        ids = [{hit.image.pk for hit in column.hits} for column in columns]
        context["in_both"] = ids[0] & ids[1]
    marks = search_feedback_marks(user=request.user, criterion=criterion, query_id=query.image_id) \
        if query.image_id else {}
    context.update({
        "columns": columns,
        "relevant_ids": {i for i, relevant in marks.items() if relevant},
        "not_relevant_ids": {i for i, relevant in marks.items() if not relevant},
        "next_offset": offset + settings.SEARCH_RESULTS_PER_PAGE,
        "offset": offset,
    })
    template = "imagesearch/_search_results.html" if request.GET.get("fragment") else "imagesearch/search.html"
    return render(request, template, context)


def _query_from(request: HttpRequest) -> tuple[SearchQuery | None, str]:
    image_id, token = int_param(request.GET, "image"), text_param(request.GET, "q")
    if image_id is not None:
        if selectors.image_get(image_id=image_id) is None:
            return None, f"No image {image_id} in the library."
        return SearchQuery(image_id=image_id), ""
    if token:
        try:
            return search_query_from_token(token), ""
        except QueryNotFound as exc:
            return None, str(exc)
    return None, ""


def _form_context(request: HttpRequest) -> dict:
    criteria = ranking_selectors.criterion_list()
    criterion_id = int_param(request.GET, "criterion")
    criterion = next((c for c in criteria if c.pk == criterion_id), None) or criterion_default()
    document_id = int_param(request.GET, "document")
    collection_id = int_param(request.GET, "collection")
    versions = list(selectors.search_versions(criterion=criterion))
    # a version of another criterion (the criterion was just changed), or no version id at all, falls
    # back to the active one
    version_id, compare_id = (_version_id(request.GET, name) for name in ("version", "compare"))
    version_id = version_id if version_id in {v.pk for v in versions} else None
    compare_id = compare_id if compare_id in {v.pk for v in versions} else None
    return {
        "criteria": criteria,
        "criterion": criterion,
        "versions": versions,
        "collections": selectors.collection_list(),
        "labels": selectors.label_list(collection_id=collection_id),
        "document": selectors.document_get(document_id=document_id),
        "selected": {"collection": collection_id, "document": document_id,
                     "label": text_param(request.GET, "label", max_length=200),
                     "version": version_id, "compare": compare_id},
        "max_upload_mb": settings.SEARCH_QUERY_MAX_BYTES // (1024 * 1024),
    }


def _version_id(params, name: str) -> int | None:
    try:
        return int_param(params, name)
    except InvalidParameter:
        return None


def _upload(request: HttpRequest) -> HttpResponse:
    upload = request.FILES.get("image")
    if upload is None:
        messages.error(request, "Choose, drop or paste an image to search with.")
        return redirect(f"{reverse('search')}?{_kept(request.POST)}")
    if upload.size > settings.SEARCH_QUERY_MAX_BYTES:
        messages.error(request, f"{upload.name}: too large ({upload.size:,} bytes; the limit is "
                                f"{settings.SEARCH_QUERY_MAX_BYTES:,}).")
        return redirect(f"{reverse('search')}?{_kept(request.POST)}")
    try:
        query = search_query_upload(data=upload.read(), name=upload.name)
    except ImageRejected as exc:
        messages.error(request, f"{upload.name}: {exc}")
        return redirect(f"{reverse('search')}?{_kept(request.POST)}")
    return redirect(f"{reverse('search')}?{_query_param(query)}&{_kept(request.POST)}")


def _query_param(query: SearchQuery) -> str:
    return urlencode({"image": query.image_id} if query.image_id else {"q": query.token})


@login_required
@permission_required("imagesearch.add_image", raise_exception=True)
@require_POST
def search_add_to_library(request: HttpRequest) -> HttpResponse:
    """The analyst chose to keep their uploaded query in the library (then they can mark results)."""
    try:
        query = search_query_from_token(text_param(request.POST, "q"))
        collection = collection_get_or_create(
            name=text_param(request.POST, "add_to_collection", max_length=200) or "Default")
        query = search_query_add_to_library(query=query, collection=collection)
    except (QueryNotFound, ImageRejected, FileNotFoundError) as exc:
        messages.error(request, str(exc) if not isinstance(exc, FileNotFoundError) else "The query image is gone.")
        return redirect(f"{reverse('search')}?{_kept(request.POST)}")
    messages.success(request, f"Added {query.name or 'the query image'} to the library ({collection.name}).")
    return redirect(f"{reverse('search')}?{_query_param(query)}&{_kept(request.POST)}")


# a page region is cropped from a render this wide (the page previews are DOCUMENT_PREVIEW_WIDTH)
REGION_PAGE_WIDTH = 2000


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_POST
def search_region(request: HttpRequest) -> HttpResponse:
    """Search with a box drawn on a picture: a library image (``image``), an upload kept aside (``q``) or a
    document's page (``document`` and ``page``); ``box`` is "left,top,right,bottom" in shares of the picture.
    The region is cropped and searched as an upload: nothing joins the library unless the user adds it."""
    form = request.POST
    box = _region_box(form.get("box", ""))
    # the search keeps the page's choices, but a region of a document's page searches the whole library
    kept = _kept({name: value for name, value in form.items() if name != "document"})
    try:
        data, name = _region_picture(form)
        region = search_query_region(data=data, box=box, name=name[:500])
    except (QueryNotFound, ImageRejected, DocumentRejected) as exc:
        problem = str(exc)
    except FileNotFoundError:
        problem = "The picture's file is missing from the store."
    except PdfiumError:
        problem = "This page could not be rendered."
    else:
        return redirect(f"{reverse('search')}?{_query_param(region)}&{kept}")
    messages.error(request, problem)
    return redirect(f"{reverse('search')}?{kept}")


def _region_picture(form) -> tuple[bytes, str]:
    """The bytes of the picture a region was drawn on, and the query's name."""
    document_id = int_param(form, "document")
    if document_id is not None:
        document = get_object_or_404(Document, pk=document_id)
        page = int_param(form, "page", default=1, min_value=1, max_value=100_000)
        preview = document_page_preview(document=document, page_number=page, width=REGION_PAGE_WIDTH)
        return storage.media_path(preview).read_bytes(), f"a region of {document.title}, p. {page}"
    image_id = int_param(form, "image")
    if image_id is None:
        query = search_query_from_token(text_param(form, "q"))
        if query.image_id is None:
            return query.path.read_bytes(), f"a region of {query.name or 'your image'}"
        image_id = query.image_id  # it has joined the library since
    image = selectors.image_get(image_id=image_id)
    if image is None:
        raise Http404(f"No image {image_id} in the library.")
    return storage.media_path(image.file.name).read_bytes(), f"a region of {image.title}"


def _region_box(raw: str) -> tuple[float, float, float, float]:
    parts = raw.split(",")
    try:
        box = tuple(float(part) for part in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or not (0.0 <= box[0] < box[2] <= 1.0 and 0.0 <= box[1] < box[3] <= 1.0):
        raise InvalidParameter("box", REGION_INVALID)
    return box


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def search_query_thumbnail(request: HttpRequest, token: str) -> FileResponse:
    try:
        query = search_query_from_token(token)
        if query.image_id is not None:  # it has joined the library since
            image = selectors.image_get(image_id=query.image_id)
            if image is None:
                raise QueryNotFound("No such query image.")
            return redirect("media-file", image.thumbnail.name)
        response = FileResponse(open(search_query_thumbnail_path(query=query), "rb"), content_type="image/webp")
    except (QueryNotFound, FileNotFoundError):
        raise Http404("No such query image.") from None
    response["Cache-Control"] = "private, max-age=3600"
    return response
