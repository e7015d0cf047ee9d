"""Image-library API: one view per operation, thin over selectors and services."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from imagesearch import selectors
from imagesearch.api.permissions import HasModelPermission
from imagesearch.api.serializers import (
    DocumentDetailOutputSerializer,
    DocumentOutputSerializer,
    DocumentUploadInputSerializer,
    ImportJobOutputSerializer,
    ImageFilterSerializer,
    ImageOutputSerializer,
    ImageUploadInputSerializer,
    ImageUploadOutputSerializer,
    JobOutputSerializer,
    SearchFeedbackInputSerializer,
    SearchFeedbackOutputSerializer,
    SearchInputSerializer,
    SearchOutputSerializer,
    WorkerOutputSerializer,
)
from imagesearch.imaging import ImageRejected
from imagesearch.models import Document, Image, Job
from imagesearch.params import int_param, text_param
from imagesearch.services.documents import document_upload
from imagesearch.services.ingest import image_upload
from imagesearch.services.library import collection_get_or_create
from imagesearch.services.jobs import job_cancel
from imagesearch.services.library import image_delete
from imagesearch.services.query_uploads import (
    QUERY_TOO_LARGE,
    QueryNotFound,
    SearchQuery,
    search_query_add_to_library,
    search_query_from_token,
    search_query_upload,
)
from imagesearch.workers import workers_check_jobs
from labeling.services.feedback import search_feedback_mark
from ranking.models import SimilarityCriterion
from ranking.services.criteria import criterion_resolve


class ImageListApi(ListAPIView):
    serializer_class = ImageOutputSerializer
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"

    @extend_schema(
        parameters=[
            OpenApiParameter("collection", int, description="collection id"),
            OpenApiParameter("document", int, description="document id"),
            OpenApiParameter("label", str),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = ImageFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        return selectors.image_list(
            collection_id=data.get("collection"), document_id=data.get("document"), label=data.get("label")
        )


class ImageDetailApi(APIView):
    def get_permissions(self):
        self.required_permission = "imagesearch.delete_image" if self.request.method == "DELETE" else "imagesearch.search"
        return [IsAuthenticated(), HasModelPermission()]

    @extend_schema(responses=ImageOutputSerializer)
    def get(self, request, image_id: int):
        image = get_object_or_404(selectors.image_list(), pk=image_id)
        return Response(ImageOutputSerializer(image).data)

    @extend_schema(responses={204: None})
    def delete(self, request, image_id: int):
        image_delete(image=get_object_or_404(Image, pk=image_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImageUploadApi(APIView):
    """Upload one or more image files; the answer has one result per file.

    A bad file does not fail the request: its result says ``failed`` and why. Small images are
    imported in the request (200); TIFFs and large uploads are ``queued`` for an import job that
    the workers run, and the answer (202) includes that job (follow it at ``/api/documents/imports/``).
    """

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.add_image"

    @extend_schema(request=ImageUploadInputSerializer,
                   responses={200: ImageUploadOutputSerializer, 202: ImageUploadOutputSerializer})
    def post(self, request):
        payload = ImageUploadInputSerializer(data={
            "files": request.FILES.getlist("files"),
            "collection": request.data.get("collection", "Default"),
            "label": request.data.get("label", ""),
        })
        payload.is_valid(raise_exception=True)
        upload = image_upload(
            files=payload.validated_data["files"], collection_name=payload.validated_data["collection"],
            label=payload.validated_data["label"], created_by=request.user,
        )
        return Response(ImageUploadOutputSerializer(upload, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED if upload.job else status.HTTP_200_OK)


class AnalystApi(APIView):
    """For analysts and admins (``imagesearch.search``), as the search page; uploads or JSON."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"


class SearchApi(AnalystApi):
    """The library images most similar to a query image, under a criterion's model version.

    The query is an uploaded image (multipart ``image``), a library image
    (``image_id``) or an earlier upload (``query_token``). An upload is checked
    from its bytes and not kept in the library unless ``add_to_library``.
    """

    @extend_schema(request=SearchInputSerializer, responses=SearchOutputSerializer)
    def post(self, request):
        payload = SearchInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            query = self._query(data)
            if data["add_to_library"] and query.image_id is None:
                if not request.user.has_perm("imagesearch.add_image"):
                    raise PermissionDenied("You may not add images to the library.")
                collection = collection_get_or_create(name=data["add_to_collection"])
                query = search_query_add_to_library(query=query, collection=collection)
            results = selectors.search_answer(
                query=query, criterion=data.get("criterion"), version_id=data.get("version"), k=data["k"],
                offset=data["offset"], collection_id=data.get("collection"), document_id=data.get("document"),
                label=data.get("label"))
        except (ImageRejected, QueryNotFound, selectors.SearchRefused) as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(SearchOutputSerializer({
            "query": {"image_id": query.image_id, "token": query.token, "name": query.name},
            "criterion": {"id": results.criterion.pk, "name": results.criterion.name},
            "version": {"id": results.version.pk, "kind": results.version.kind, "status": results.version.status},
            "offset": results.offset,
            "has_more": results.has_more,
            "results": [{"rank": results.offset + n, "image": hit.image, "score": hit.score, "closeness": hit.closeness,
                         "distance": hit.distance, "occurrences": hit.occurrences}
                        for n, hit in enumerate(results.hits, 1)],
        }).data)

    @staticmethod
    def _query(data) -> SearchQuery:
        if data.get("image") is not None:
            upload = data["image"]
            if upload.size > settings.SEARCH_QUERY_MAX_BYTES:  # refused before reading it into memory
                raise ImageRejected(QUERY_TOO_LARGE.format(size=upload.size, limit=settings.SEARCH_QUERY_MAX_BYTES))
            return search_query_upload(data=upload.read(), name=upload.name, thumbnail=False)
        if data.get("image_id") is not None:
            get_object_or_404(Image, pk=data["image_id"])
            return SearchQuery(image_id=data["image_id"])
        return search_query_from_token(data["query_token"])


@extend_schema_view(post=extend_schema(exclude=True))
class SearchNoSlashApi(SearchApi):
    """``POST /api/search``: the same as ``/api/search/`` (listed once in the schema)."""


class SearchFeedbackApi(AnalystApi):
    """Mark a search result relevant or not relevant to a (library) query image, or clear the mark.

    Every pair of a relevant and a not-relevant result of one query becomes a
    judged triplet of the criterion (source "search feedback") that training uses.
    """

    @extend_schema(request=SearchFeedbackInputSerializer, responses=SearchFeedbackOutputSerializer)
    def post(self, request):
        payload = SearchFeedbackInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            criterion = criterion_resolve(data.get("criterion"))
        except SimilarityCriterion.DoesNotExist:
            raise ValidationError({"criterion": "No such criterion."}) from None
        relevant = {"relevant": True, "not_relevant": False, "none": None}[data["mark"]]
        outcome = search_feedback_mark(user=request.user, criterion=criterion, query_id=data["query"],
                                       result_id=data["result"], relevant=relevant)
        return Response(SearchFeedbackOutputSerializer(outcome).data)


class ModelAdminApi(APIView):
    """For admins who run the models (``ranking.manage_models``): jobs and workers."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "ranking.manage_models"


class JobListApi(ModelAdminApi):
    """Background jobs, newest first: progress, rate, ETA, elapsed time, log tail, error (admins)."""

    @extend_schema(parameters=[OpenApiParameter("limit", int), OpenApiParameter("kind", str)],
                   responses=JobOutputSerializer(many=True))
    def get(self, request):
        limit = min(int_param(request.query_params, "limit", default=20, min_value=1), 200)
        jobs = selectors.job_list(kind=text_param(request.query_params, "kind", max_length=50) or None)[:limit]
        return Response(JobOutputSerializer(jobs, many=True, context={"request": request}).data)


class JobCancelApi(ModelAdminApi):
    """Cancel a job: its tasks stop at their next check; finished parts are kept (admins)."""

    @extend_schema(request=None, responses=JobOutputSerializer)
    def post(self, request, job_id: int):
        job = get_object_or_404(Job, pk=job_id)
        job_cancel(job_id=job.pk, message=f"Cancelled by {request.user.get_username()}.")
        job.refresh_from_db()
        return Response(JobOutputSerializer(job, context={"request": request}).data)


class WorkerListApi(ModelAdminApi):
    """The Celery workers online, their queues and GPUs; running jobs of workers gone are reported failed."""

    @extend_schema(responses={200: WorkerOutputSerializer(many=True), 503: None})
    def get(self, request):
        workers = workers_check_jobs()
        if workers is None:  # the broker is down: say so, and judge no job by it
            return Response({"detail": "The broker cannot be reached."}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(WorkerOutputSerializer(workers, many=True).data)


class DocumentListApi(ListAPIView):
    """The library's documents, newest first; filter by collection or title."""

    serializer_class = DocumentOutputSerializer
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"

    @extend_schema(parameters=[OpenApiParameter("collection", int), OpenApiParameter("q", str)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        return selectors.document_list(collection_id=int_param(params, "collection"), query=text_param(params, "q"))


class DocumentDetailApi(APIView):
    """One document with its library images: page number and position on the page of each."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"

    @extend_schema(responses=DocumentDetailOutputSerializer)
    def get(self, request, document_id: int):
        document = get_object_or_404(Document.objects.select_related("collection"), pk=document_id)
        document.ordered_images = selectors.document_occurrences(document=document)
        return Response(DocumentDetailOutputSerializer(document).data)


class DocumentUploadApi(APIView):
    """Upload documents (PDF, multi-page TIFF), images, or .zip archives of them to import.

    The answer (202) is the import job: the Celery workers import a document per task.
    Follow it at ``/api/documents/imports/``; a file that cannot be imported is listed
    there with the reason, and the others are imported.
    """

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.add_document"

    @extend_schema(request=DocumentUploadInputSerializer, responses={202: ImportJobOutputSerializer})
    def post(self, request):
        payload = DocumentUploadInputSerializer(data={
            "files": request.FILES.getlist("files"),
            "collection": request.data.get("collection", "Default"),
            "label_from_folder": request.data.get("label_from_folder", False),
        })
        payload.is_valid(raise_exception=True)
        job = document_upload(
            files=payload.validated_data["files"], collection_name=payload.validated_data["collection"],
            label_from_folder=payload.validated_data["label_from_folder"], created_by=request.user,
        )
        return Response(ImportJobOutputSerializer(job, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class ImportJobListApi(APIView):
    """Recent import jobs (one's own; everybody's for admins): documents and images done, rate, problems."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"

    @extend_schema(parameters=[OpenApiParameter("limit", int)], responses=ImportJobOutputSerializer(many=True))
    def get(self, request):
        limit = min(int_param(request.query_params, "limit", default=10, min_value=1), 100)
        jobs = selectors.import_jobs(user=request.user, limit=limit)
        return Response(ImportJobOutputSerializer(jobs, many=True, context={"request": request}).data)
