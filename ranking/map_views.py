"""The map and the cluster list: a version's images laid out in the plane (``static/js/map.js`` draws the
points from ``/api/maps/<id>/points/`` and posts selections to ``/api/maps/<id>/selection/``), and its
clusters with the images nearest each centre. Admins start a map of a version from here."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from imagesearch.errors import AppError
from imagesearch.params import InvalidParameter, int_param
from ranking import selectors
from ranking.models import ModelVersion, SimilarityCriterion
from ranking.services.criteria import criterion_default
from ranking.services.maps import map_start


def _chosen(params) -> tuple[SimilarityCriterion, list[ModelVersion], ModelVersion | None]:
    criterion_id = int_param(params, "criterion")
    criterion = get_object_or_404(SimilarityCriterion, pk=criterion_id) if criterion_id else criterion_default()
    versions = selectors.map_versions(criterion=criterion)
    version_id = int_param(params, "version")
    version = next((v for v in versions if v.pk == version_id), None) if version_id else None
    if version_id and version is None:
        raise InvalidParameter("version", f"Version {version_id} of this criterion has no embeddings to map.")
    return criterion, versions, version or (versions[0] if versions else None)


def _context(request: HttpRequest) -> dict:
    criterion, versions, version = _chosen(request.GET)
    embedding_map = selectors.map_latest(version=version) if version else None
    return {"criteria": SimilarityCriterion.objects.order_by("pk"), "criterion": criterion, "versions": versions,
            "version": version, "map": embedding_map, "finished": embedding_map is not None and embedding_map.succeeded}


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def map_page(request: HttpRequest) -> HttpResponse:
    context = _context(request)
    if context["finished"]:
        # the legend's clusters and where each is on the map, for map.js (a data attribute: the CSP allows no
        # inline script)
        context["clusters_json"] = json.dumps([{"number": c.number, "size": c.size, "x": c.x, "y": c.y}
                                               for c in context["map"].clusters.all()])
        context["page_points"] = settings.MAP_PAGE_POINTS
        # images embedded since the map was computed are not on it: say so, and offer a new map
        context["not_on_map"] = max(0, context["version"].embeddings.count() - context["map"].point_count)
    return render(request, "ranking/map.html", context)


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def cluster_list(request: HttpRequest) -> HttpResponse:
    context = _context(request)
    if context["finished"]:
        context["rows"] = selectors.map_clusters(embedding_map=context["map"])
    return render(request, "ranking/clusters.html", context)


@login_required
@permission_required("ranking.manage_models", raise_exception=True)
@require_POST
def map_compute(request: HttpRequest) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=int_param(request.POST, "version", default=0))
    try:
        map_start(version=version, created_by=request.user)
        messages.success(request, f"Computing the clusters and map of version {version.pk}: this page shows its "
                                  "progress.")
    except AppError as exc:
        messages.error(request, str(exc))
    next_page = "cluster-list" if request.POST.get("next") == "clusters" else "map"
    return redirect(f"{reverse(next_page)}?criterion={version.criterion_id}&version={version.pk}")
