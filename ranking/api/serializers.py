from __future__ import annotations

from rest_framework import serializers

from imagesearch.api.serializers import ImageOutputSerializer
from ranking.services.duplicates import DEFAULT_MAX_DISTANCE, DEFAULT_NEIGHBOURS


class DuplicateMemberSerializer(serializers.Serializer):
    image = ImageOutputSerializer()
    distance = serializers.FloatField(allow_null=True, help_text="Cosine distance to the group's reference "
                                      "(null: joined to it through other images).")
    mark = serializers.CharField(help_text='"duplicate", "distinct" or "" (its pair with the reference).')


class DuplicateGroupSerializer(serializers.Serializer):
    reference = ImageOutputSerializer()
    members = DuplicateMemberSerializer(many=True)
    largest_distance = serializers.FloatField()


class DuplicateScanSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField(source="version_id")
    max_distance = serializers.FloatField()
    neighbours = serializers.IntegerField()
    pair_count = serializers.IntegerField()
    job = serializers.IntegerField(source="job_id", allow_null=True)
    status = serializers.CharField(source="job.status", allow_null=True, default=None)


class DuplicateGroupsOutputSerializer(serializers.Serializer):
    scan = DuplicateScanSerializer()
    max_distance = serializers.FloatField()
    mutual = serializers.IntegerField()
    group_count = serializers.IntegerField()
    images_in_groups = serializers.IntegerField()
    groups = DuplicateGroupSerializer(many=True)


class DuplicateScanInputSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(required=False, min_value=1)
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the features made for "
                                       "near-duplicates if the criterion has them, else its active version.")
    max_distance = serializers.FloatField(default=DEFAULT_MAX_DISTANCE, min_value=0.001, max_value=1.0)
    neighbours = serializers.IntegerField(default=DEFAULT_NEIGHBOURS, min_value=1, max_value=100)


class DuplicateMarkInputSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(required=False, min_value=1)
    reference = serializers.IntegerField(min_value=1, help_text="The group's reference image.")
    image = serializers.IntegerField(min_value=1)
    mark = serializers.ChoiceField(choices=["duplicate", "distinct", "none"])


class DuplicateMarkOutputSerializer(serializers.Serializer):
    mark = serializers.CharField()
    judgments = serializers.IntegerField()


class MapSelectionInputSerializer(serializers.Serializer):
    polygon = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(min_value=-1.0, max_value=2.0), min_length=2,
                                    max_length=2),
        min_length=3, max_length=2000, help_text="[[x, y], …] in map coordinates (0…1): a box's four corners or a lasso")
    action = serializers.ChoiceField(choices=["count", "collection", "label", "focus"], default="count",
                                     help_text="count: only say which images; collection: move them into the "
                                               "collection `name`; label: give them the label `name`; focus: "
                                               "make them a labeling focus called `name`")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class MapSelectionOutputSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Images inside the polygon (all of the map's, not only those drawn).")
    preview = serializers.SerializerMethodField(help_text="The first 60 of them: id, title, thumbnail_url, url.")
    message = serializers.CharField()
    url = serializers.CharField(allow_blank=True, help_text="Where to see what the action made.")

    def get_preview(self, outcome) -> list[dict]:
        from django.urls import reverse

        from imagesearch.api.serializers import media_url
        from imagesearch.models import Image

        images = Image.objects.select_related("document").in_bulk(outcome.image_ids)
        return [{"id": i, "title": images[i].title, "thumbnail_url": media_url(images[i].thumbnail.name),
                 "url": reverse("image-detail", args=[i])} for i in outcome.image_ids if i in images]
