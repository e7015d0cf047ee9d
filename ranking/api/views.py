"""The near-duplicates API: the groups (analysts), a new scan (admins), and marks on a group's images."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.generics import get_object_or_404
from rest_framework.views import APIView

from imagesearch.api.permissions import HasModelPermission
from imagesearch.params import float_param, int_param
from ranking import selectors
from ranking.api.serializers import (
    DuplicateGroupsOutputSerializer, DuplicateMarkInputSerializer, DuplicateMarkOutputSerializer,
    DuplicateScanInputSerializer, DuplicateScanSerializer,
)
from ranking.models import ModelVersion, SimilarityCriterion
from ranking.services.criteria import criterion_resolve
from ranking.services.duplicates import duplicate_mark, duplicate_scan_start


def _criterion(value) -> SimilarityCriterion:
    try:
        return criterion_resolve(value)
    except SimilarityCriterion.DoesNotExist:
        raise ValidationError({"criterion": "No such criterion."}) from None


class DuplicateGroupsApi(APIView):
    """The latest scan's near-duplicate groups under ``distance`` (at most the scan's) and ``mutual``,
    largest first (``ranking.selectors.duplicate_groups``)."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"

    @extend_schema(parameters=[OpenApiParameter("criterion", int), OpenApiParameter("distance", float),
                               OpenApiParameter("mutual", int, description="keep a pair only when each image is "
                                                "among the other's this many nearest (default 3)"),
                               OpenApiParameter("offset", int), OpenApiParameter("limit", int)],
                   responses=DuplicateGroupsOutputSerializer)
    def get(self, request):
        params = request.query_params
        criterion = _criterion(int_param(params, "criterion"))
        scan = selectors.duplicate_scan_latest(criterion=criterion)
        if scan is None or not scan.succeeded:
            raise NotFound("No finished near-duplicate scan for this criterion yet.")
        found = selectors.duplicate_groups(
            scan=scan, max_distance=float_param(params, "distance", default=None, min_value=0.0, max_value=2.0),
            mutual=int_param(params, "mutual", default=None, min_value=1, max_value=100),
            offset=int_param(params, "offset", default=0), limit=int_param(params, "limit", default=20, min_value=1,
                                                                            max_value=200))
        return Response(DuplicateGroupsOutputSerializer(found, context={"request": request}).data)


class DuplicateScanApi(APIView):
    """Start a scan (admins): of ``version``, else of the criterion's features made for near-duplicates, else
    of its active version (``ranking.selectors.duplicate_versions``); follow its job in ``/api/jobs/``."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "ranking.manage_models"

    @extend_schema(request=DuplicateScanInputSerializer, responses={202: DuplicateScanSerializer})
    def post(self, request):
        payload = DuplicateScanInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        criterion = _criterion(data.get("criterion"))
        version = get_object_or_404(ModelVersion, pk=data["version"], criterion=criterion) if data.get("version") else None
        try:
            scan = duplicate_scan_start(criterion=criterion, version=version, max_distance=data["max_distance"],
                                        neighbours=data["neighbours"], created_by=request.user)
        except selectors.NoActiveVersion as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(DuplicateScanSerializer(scan).data, status=status.HTTP_202_ACCEPTED)


class DuplicateMarkApi(APIView):
    """Mark an image of a group as the same picture as its reference, a different one, or clear the mark."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"

    @extend_schema(request=DuplicateMarkInputSerializer, responses=DuplicateMarkOutputSerializer)
    def post(self, request):
        payload = DuplicateMarkInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        outcome = duplicate_mark(user=request.user, criterion=_criterion(data.get("criterion")),
                                 reference_id=data["reference"], image_id=data["image"],
                                 verdict=None if data["mark"] == "none" else data["mark"])
        return Response(DuplicateMarkOutputSerializer(outcome).data)
