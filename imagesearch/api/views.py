"""Image-library API: one view per operation, thin over selectors and services."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from imagesearch import selectors
from imagesearch.api.permissions import HasModelPermission
from imagesearch.api.serializers import (
    ImageFilterSerializer,
    ImageOutputSerializer,
    ImageUploadInputSerializer,
    ImageUploadOutputSerializer,
)
from imagesearch.models import Image
from imagesearch.services.ingest import collection_get_or_create, image_ingest_bytes
from imagesearch.services.library import image_delete


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

    A bad file does not fail the request: its result says ``failed`` and why.
    """

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.add_image"

    @extend_schema(request=ImageUploadInputSerializer, responses=ImageUploadOutputSerializer)
    def post(self, request):
        payload = ImageUploadInputSerializer(data={
            "files": request.FILES.getlist("files"),
            "collection": request.data.get("collection", "Default"),
            "label": request.data.get("label", ""),
        })
        payload.is_valid(raise_exception=True)
        collection = collection_get_or_create(name=payload.validated_data["collection"])
        results = []
        for upload in payload.validated_data["files"]:
            outcome = image_ingest_bytes(
                data=upload.read(), original_name=upload.name, collection=collection,
                label=payload.validated_data["label"],
            )
            results.append({
                "name": upload.name, "status": outcome.status, "message": outcome.message,
                "image_ids": outcome.image_ids, "document_id": outcome.document_id,
            })
        return Response(ImageUploadOutputSerializer({"results": results}).data)
