"""Input and output serializers of the image-library API, one small pair per operation."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from imagesearch.models import Collection, Document, Image


def media_url(name: str) -> str:
    return reverse("media-file", args=[name]) if name else ""


class CollectionOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Collection
        fields = ["id", "name"]


class DocumentSummarySerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["id", "title", "page_count", "url"]

    def get_url(self, document: Document) -> str:
        return reverse("document-detail", args=[document.pk])


class ImageOutputSerializer(serializers.ModelSerializer):
    collection = CollectionOutputSerializer()
    document = DocumentSummarySerializer(allow_null=True)
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id", "sha256", "original_name", "label", "metadata", "width", "height", "format",
            "media_type", "file_size", "collection", "document", "page_number", "bbox",
            "file_url", "thumbnail_url", "page_url", "created_at",
        ]

    def get_file_url(self, image: Image) -> str:
        return media_url(image.file.name)

    def get_thumbnail_url(self, image: Image) -> str:
        return media_url(image.thumbnail.name)

    def get_page_url(self, image: Image) -> str:
        return reverse("image-detail", args=[image.pk])


class ImageFilterSerializer(serializers.Serializer):
    collection = serializers.IntegerField(required=False, min_value=1)
    document = serializers.IntegerField(required=False, min_value=1)
    label = serializers.CharField(required=False, max_length=200)


class ImageUploadInputSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)
    collection = serializers.CharField(required=False, max_length=200, default="Default")
    label = serializers.CharField(required=False, max_length=200, allow_blank=True, default="")


class UploadResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["imported", "duplicate", "failed"])
    message = serializers.CharField(allow_blank=True)
    image_ids = serializers.ListField(child=serializers.IntegerField())
    document_id = serializers.IntegerField(allow_null=True)


class ImageUploadOutputSerializer(serializers.Serializer):
    results = UploadResultSerializer(many=True)
