"""Labeling API: one view per operation, thin over selectors and services.

Labelers (``labeling.label``) get triplets, answer, skip, undo and see their
figures; admins (``labeling.manage_labeling``) make gold triplets, see labelers'
quality and move judgments between installations.
"""

from __future__ import annotations

import io
import tempfile

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from imagesearch.api.permissions import HasModelPermission
from labeling import selectors
from labeling.api import serializers as s
from labeling.models import LabelingFocus, Triplet
from labeling.services import focus as focus_service
from labeling.services import judgments, quality, transfer
from ranking.models import SimilarityCriterion


class LabelerApi(APIView):
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "labeling.label"

    def criterion(self, criterion_id: int | None) -> SimilarityCriterion:
        try:
            return selectors.criterion_for_labeler(user=self.request.user, criterion_id=criterion_id)
        except PermissionError as exc:
            raise PermissionDenied(str(exc)) from None

    def focus(self, criterion: SimilarityCriterion, focus_id: int | None):
        try:
            return selectors.focus_for_labeler(criterion=criterion, focus_id=focus_id)
        except LookupError as exc:
            raise ValidationError({"focus": [str(exc)]}) from None

    def check_triplet_criterion(self, triplet_id: int) -> None:
        """A labeler taken off a criterion may not answer what they were given before."""
        criterion_id = Triplet.objects.filter(pk=triplet_id).values_list("criterion_id", flat=True).first()
        if criterion_id is not None:
            self.criterion(criterion_id)


class LabelingAdminApi(APIView):
    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "labeling.manage_labeling"

    def criterion(self, criterion_id: int | None) -> SimilarityCriterion:
        from ranking.services.criteria import criterion_resolve

        if criterion_id is None:
            return criterion_resolve(None)
        return get_object_or_404(SimilarityCriterion, pk=criterion_id)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class CriteriaApi(LabelerApi):
    """The similarity criteria you may label."""

    @extend_schema(responses=s.CriterionOutputSerializer(many=True))
    def get(self, request):
        return Response(s.CriterionOutputSerializer(selectors.criteria_for_labeler(user=request.user), many=True).data)


class NextTripletsApi(LabelerApi):
    """The next triplets for you to answer, held for you; never ones you were given before."""

    @extend_schema(request=s.NextInputSerializer, responses=s.NextOutputSerializer)
    def post(self, request):
        data = _valid(s.NextInputSerializer, request.data)
        criterion = self.criterion(data.get("criterion"))
        focus = self.focus(criterion, data.get("focus"))
        triplets = judgments.assignments_next(user=request.user, criterion=criterion, focus=focus,
                                              count=data["count"], resume=data["resume"])
        return Response(s.NextOutputSerializer({"triplets": triplets}).data)


class FocusesApi(LabelerApi):
    """The focuses a criterion's labelers may choose (GET); an admin makes one (POST): the images of a
    collection or of a label, a map cluster, a saved search (an image and its nearest), or a list of images."""

    @extend_schema(parameters=[OpenApiParameter("criterion", int)], responses=s.FocusOutputSerializer(many=True))
    def get(self, request):
        data = _valid(s.CriterionInputSerializer, request.query_params)
        focuses = selectors.focuses_offered(criterion=self.criterion(data.get("criterion")))
        return Response(s.FocusOutputSerializer(focuses, many=True).data)

    @extend_schema(request=s.FocusInputSerializer, responses={201: s.FocusOutputSerializer})
    def post(self, request):
        if not request.user.has_perm("labeling.manage_labeling"):
            raise PermissionDenied("Only an admin defines what labelers focus on.")
        data = _valid(s.FocusInputSerializer, request.data)
        criterion = LabelingAdminApi.criterion(self, data.pop("criterion", None))
        focus = focus_service.focus_make(criterion=criterion, created_by=request.user, **data)
        focus.image_count = selectors.focus_images(focus).count()
        return Response(s.FocusOutputSerializer(focus).data, status=status.HTTP_201_CREATED)


class FocusApi(LabelingAdminApi):
    """Archive a focus (no longer offered to labelers; its judgments stay), or offer it again."""

    @extend_schema(request=s.FocusUpdateInputSerializer, responses=s.FocusOutputSerializer)
    def patch(self, request, focus_id: int):
        data = _valid(s.FocusUpdateInputSerializer, request.data)
        focus = focus_service.focus_archive(focus=get_object_or_404(LabelingFocus, pk=focus_id),
                                            archived=data["archived"])
        return Response(s.FocusOutputSerializer(focus).data)


class JudgmentSubmitApi(LabelerApi):
    """Answer a triplet you were given: "a", "b" or "unsure" (can't tell)."""

    @extend_schema(request=s.JudgmentInputSerializer, responses={201: s.JudgmentOutputSerializer})
    def post(self, request):
        data = _valid(s.JudgmentInputSerializer, request.data)
        self.check_triplet_criterion(data["triplet"])
        judgment = judgments.judgment_submit(user=request.user, triplet_id=data["triplet"], answer=data["answer"],
                                             seconds=data.get("seconds"))
        return Response(s.JudgmentOutputSerializer(judgment).data, status=status.HTTP_201_CREATED)


class SkipApi(LabelerApi):
    """Pass on a triplet you were given: it goes to other labelers, never back to you."""

    @extend_schema(request=s.TripletRefInputSerializer, responses={204: None})
    def post(self, request):
        data = _valid(s.TripletRefInputSerializer, request.data)
        self.check_triplet_criterion(data["triplet"])
        judgments.assignment_skip(user=request.user, triplet_id=data["triplet"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class UndoApi(LabelerApi):
    """Take back your last answer (of the last hour); its triplet comes back to you."""

    @extend_schema(request=s.CriterionInputSerializer, responses=s.TripletOutputSerializer)
    def post(self, request):
        data = _valid(s.CriterionInputSerializer, request.data)
        triplet = judgments.judgment_undo(user=request.user, criterion=self.criterion(data.get("criterion")))
        return Response(s.triplet_output(triplet))


class StatsApi(LabelerApi):
    """Your answers today and in all, your pace, and your score on gold triplets."""

    @extend_schema(parameters=[OpenApiParameter("criterion", int)], responses=s.StatsOutputSerializer)
    def get(self, request):
        data = _valid(s.CriterionInputSerializer, request.query_params)
        stats = selectors.labeler_stats(user=request.user, criterion=self.criterion(data.get("criterion")))
        return Response(s.StatsOutputSerializer(stats).data)


class LabelerQualityApi(LabelingAdminApi):
    """Per labeler: answers, accuracy on gold triplets and agreement with other labelers."""

    @extend_schema(parameters=[OpenApiParameter("criterion", int)], responses=s.LabelerQualityOutputSerializer(many=True))
    def get(self, request):
        data = _valid(s.CriterionInputSerializer, request.query_params)
        rows = selectors.labeler_quality(criterion=self.criterion(data.get("criterion")))
        return Response(s.LabelerQualityOutputSerializer(rows, many=True).data)


class GoldApi(LabelingAdminApi):
    """Make a judged triplet gold: its answer becomes known, and it is mixed into labelers' queues."""

    @extend_schema(request=s.GoldInputSerializer, responses=s.GoldOutputSerializer)
    def post(self, request):
        data = _valid(s.GoldInputSerializer, request.data)
        triplet = get_object_or_404(Triplet, pk=data["triplet"])
        triplet = quality.gold_make(triplet=triplet, answer=data.get("answer"))
        return Response(s.GoldOutputSerializer(triplet).data)


class JudgmentExportApi(LabelingAdminApi):
    """All judgments of a criterion as JSON Lines or CSV, images named by SHA-256."""

    @extend_schema(parameters=[OpenApiParameter("criterion", int), OpenApiParameter("type", str, enum=["jsonl", "csv"])],
                   responses={(200, "application/x-ndjson"): OpenApiTypes.STR, (200, "text/csv"): OpenApiTypes.STR})
    def get(self, request):
        data = _valid(s.ExportInputSerializer, request.query_params)
        criterion, fmt = self.criterion(data.get("criterion")), data["type"]
        # spooled to disk: millions of rows must not sit in memory
        spool = tempfile.TemporaryFile()
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
        transfer.judgments_export(criterion=criterion, out=text, fmt=fmt)
        text.detach()
        spool.seek(0)
        return FileResponse(spool, as_attachment=True, filename=f"judgments-{criterion.pk}.{fmt}",
                            content_type="text/csv" if fmt == "csv" else "application/x-ndjson")


class JudgmentImportApi(LabelingAdminApi):
    """Import judgments exported by this or another installation; rows already here are not added again."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request=s.ImportInputSerializer, responses=s.ImportOutputSerializer)
    def post(self, request):
        data = _valid(s.ImportInputSerializer, request.data)
        upload = data["file"]
        fmt = transfer.fmt_from_name(upload.name)
        text = io.TextIOWrapper(upload.file, encoding="utf-8", newline="")
        report = transfer.judgments_import(criterion=self.criterion(data.get("criterion")), file=text, fmt=fmt)
        return Response(s.ImportOutputSerializer({
            "imported": report.imported, "already_present": report.already_present,
            "failed": [{"line": line, "reason": reason} for line, reason in report.failed],
        }).data)
