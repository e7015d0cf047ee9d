"""Input and output serializers of the labeling API, one small pair per operation."""

from __future__ import annotations

from rest_framework import serializers

from imagesearch.api.serializers import media_url
from imagesearch.models import Image
from labeling.models import LabelingFocus, Triplet, TripletJudgment


class CriterionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    question = serializers.CharField()


class TripletImageSerializer(serializers.Serializer):
    """An image as a labeler sees it: pictures only (no label or file name, which would bias the answer)."""

    id = serializers.IntegerField(source="pk")
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()

    def get_file_url(self, image: Image) -> str:
        return media_url(image.displayable_name)  # a TIFF scan's thumbnail

    def get_thumbnail_url(self, image: Image) -> str:
        return media_url(image.thumbnail.name)


class TripletOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    criterion = serializers.IntegerField(source="criterion_id")
    question = serializers.CharField(source="criterion.question")
    query = TripletImageSerializer()
    a = TripletImageSerializer(source="candidate_a")
    b = TripletImageSerializer(source="candidate_b")


class NextInputSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(required=False, help_text="default: the first criterion you may label")
    focus = serializers.IntegerField(required=False, help_text="only triplets of this focus (GET /api/labeling/focuses/)")
    count = serializers.IntegerField(required=False, min_value=1, max_value=20, default=1)
    resume = serializers.BooleanField(required=False, default=False,
                                      help_text="first the triplets still held for you (a page just opened)")


class FocusOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    criterion = serializers.IntegerField(source="criterion_id")
    name = serializers.CharField()
    kind = serializers.CharField()
    collection = serializers.IntegerField(source="collection_id", allow_null=True)
    label = serializers.CharField()
    description = serializers.CharField()
    archived = serializers.BooleanField()
    image_count = serializers.IntegerField(required=False, help_text="Images in it now.")


class FocusInputSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(required=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                 help_text="required, except for a cluster or a search (named after them)")
    kind = serializers.ChoiceField(choices=LabelingFocus.Kind.choices)
    collection = serializers.IntegerField(required=False, help_text="kind collection")
    label = serializers.CharField(required=False, allow_blank=True, max_length=200, help_text="kind label")
    cluster = serializers.IntegerField(required=False, help_text="kind cluster: a map cluster's id")
    image = serializers.IntegerField(required=False, help_text="kind search: the query image")
    count = serializers.IntegerField(required=False, default=200, min_value=2, max_value=1000,
                                     help_text="kind search: how many of its nearest images")
    images = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=1_000_000,
                                   help_text="kind selection: the image ids")


class FocusUpdateInputSerializer(serializers.Serializer):
    archived = serializers.BooleanField()


class NextOutputSerializer(serializers.Serializer):
    triplets = TripletOutputSerializer(many=True)


class JudgmentInputSerializer(serializers.Serializer):
    triplet = serializers.IntegerField()
    answer = serializers.ChoiceField(choices=TripletJudgment.Answer.choices)
    seconds = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=24 * 3600)


class JudgmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    triplet = serializers.IntegerField(source="triplet_id")
    answer = serializers.CharField()
    seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()


class TripletRefInputSerializer(serializers.Serializer):
    triplet = serializers.IntegerField()


class CriterionInputSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(required=False, help_text="default: the first criterion you may label")


class StatsOutputSerializer(serializers.Serializer):
    today = serializers.IntegerField()
    total = serializers.IntegerField()
    answers_per_minute = serializers.FloatField(allow_null=True)
    # no gold figures here: live, with undo, they would tell a labeler which answers were gold


class LabelerQualityOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    answers = serializers.IntegerField()
    gold_answered = serializers.IntegerField()
    gold_accuracy = serializers.FloatField(allow_null=True)
    agreement = serializers.FloatField(allow_null=True)


class GoldInputSerializer(serializers.Serializer):
    triplet = serializers.IntegerField()
    answer = serializers.ChoiceField(choices=[("a", "A"), ("b", "B")], required=False,
                                     help_text="default: the triplet's majority answer")


class GoldOutputSerializer(serializers.Serializer):
    triplet = serializers.IntegerField(source="pk")
    gold_answer = serializers.CharField()


class ExportInputSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(required=False)
    # not "format": DRF reads ?format= to choose a renderer
    type = serializers.ChoiceField(choices=["jsonl", "csv"], default="jsonl")


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField()
    criterion = serializers.IntegerField(required=False)


class ImportFailureSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()


class ImportOutputSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    already_present = serializers.IntegerField()
    failed = ImportFailureSerializer(many=True)


def triplet_output(triplet: Triplet) -> dict:
    return TripletOutputSerializer(triplet).data
