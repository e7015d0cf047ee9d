"""Ranking's API beyond search: near-duplicates (the groups for analysts, a new scan for admins, marks on a
group's images) and the map (its points, as a compact binary for the page, and what a selection on it
becomes)."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponse

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.generics import get_object_or_404
from rest_framework.views import APIView

from imagesearch.api.permissions import HasModelPermission
from imagesearch.params import float_param, int_param
from ranking import selectors
from ranking.api.serializers import (
    DuplicateGroupsOutputSerializer, DuplicateMarkInputSerializer, DuplicateMarkOutputSerializer,
    DuplicateScanInputSerializer, DuplicateScanSerializer, MapSelectionInputSerializer, MapSelectionOutputSerializer,
)
from ranking.models import EmbeddingMap, ModelVersion, SimilarityCriterion
from ranking.services.criteria import criterion_resolve
from ranking.services.duplicates import duplicate_mark, duplicate_scan_start
from ranking.services.maps import map_selection_apply


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


class MapPointsApi(APIView):
    """Up to ``limit`` points of a map (``MAP_PAGE_POINTS`` at most), a uniform sample of those inside the box
    x0, y0, x1, y1 when given, as one binary body the page reads without parsing (little-endian):
    uint32 length of a JSON header, the header (total points, label and collection names) padded with spaces
    to 4 bytes, then n × int32 image ids, n × float32 x, n × float32 y, n × uint16 cluster numbers,
    n × uint16 label codes (0: none), n × uint16 collection codes."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"

    @extend_schema(parameters=[OpenApiParameter(name, float) for name in ("x0", "y0", "x1", "y1")]
                   + [OpenApiParameter("limit", int)], responses={(200, "application/octet-stream"): bytes})
    def get(self, request, map_id: int):
        embedding_map = get_object_or_404(EmbeddingMap.objects.select_related("job"), pk=map_id)
        if not embedding_map.succeeded:
            raise NotFound("This map is not finished.")
        params = request.query_params
        corners = [float_param(params, name, default=None, min_value=-1.0, max_value=2.0) for name in ("x0", "y0", "x1", "y1")]
        box = tuple(corners) if all(c is not None for c in corners) else None
        limit = int_param(params, "limit", default=settings.MAP_PAGE_POINTS, min_value=1,
                          max_value=settings.MAP_PAGE_POINTS)
        points = selectors.map_points(embedding_map=embedding_map, limit=limit, box=box)
        header = json.dumps({"total": points.total, "count": len(points.image_ids), "labels": points.label_names,
                             "collections": points.collection_names}).encode()
        header += b" " * (-len(header) % 4)
        body = b"".join([len(header).to_bytes(4, "little"), header, points.image_ids.astype("<i4").tobytes(),
                         points.xy[:, 0].astype("<f4").tobytes(), points.xy[:, 1].astype("<f4").tobytes(),
                         points.clusters.astype("<u2").tobytes(), points.labels.astype("<u2").tobytes(),
                         points.collections.astype("<u2").tobytes()])
        return HttpResponse(body, content_type="application/octet-stream")


class MapSelectionApi(APIView):
    """The images inside a box or lasso on a map, and what they become: a collection or a label (admins), or
    a labeling focus (labeling admins)."""

    permission_classes = [IsAuthenticated, HasModelPermission]
    required_permission = "imagesearch.search"
    ACTION_PERMISSIONS = {"collection": "imagesearch.change_image", "label": "imagesearch.change_image",
                          "focus": "labeling.manage_labeling"}

    @extend_schema(request=MapSelectionInputSerializer, responses=MapSelectionOutputSerializer)
    def post(self, request, map_id: int):
        embedding_map = get_object_or_404(EmbeddingMap.objects.select_related("job", "version"), pk=map_id)
        payload = MapSelectionInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        needed = self.ACTION_PERMISSIONS.get(data["action"])
        if needed and not request.user.has_perm(needed):
            raise PermissionDenied("You may look at a selection, not change the library with it.")
        outcome = map_selection_apply(embedding_map=embedding_map, polygon=[tuple(p) for p in data["polygon"]],
                                      action=data["action"], name=data.get("name", ""), user=request.user)
        return Response(MapSelectionOutputSerializer(outcome).data)
