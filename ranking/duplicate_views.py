"""The near-duplicates page: the library's images grouped as copies of one picture, under a threshold
the user moves, with a mark per image (the same picture, or not) that the page posts to
``/api/duplicates/marks/`` (``static/js/duplicates.js``). Admins start a new scan from it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from imagesearch.errors import AppError
from imagesearch.params import float_param, int_param
from ranking import selectors
from ranking.models import ModelVersion, SimilarityCriterion
from ranking.services.criteria import criterion_default
from ranking.services.duplicates import (
    DEFAULT_MAX_DISTANCE, DEFAULT_NEIGHBOURS, duplicate_features_prepare, duplicate_scan_start,
)

GROUPS_PER_PAGE = 20


def _criterion(params) -> SimilarityCriterion:
    criterion_id = int_param(params, "criterion")
    return get_object_or_404(SimilarityCriterion, pk=criterion_id) if criterion_id else criterion_default()


@login_required
@permission_required("imagesearch.search", raise_exception=True)
@require_GET
def duplicates(request: HttpRequest) -> HttpResponse:
    criterion = _criterion(request.GET)
    scan = selectors.duplicate_scan_latest(criterion=criterion)
    finished = scan is not None and scan.succeeded
    versions = [(v, selectors.duplicate_features(v)) for v in selectors.duplicate_versions(criterion=criterion)]
    context = {"criteria": SimilarityCriterion.objects.order_by("pk"), "criterion": criterion, "scan": scan,
               "finished": finished, "default_max_distance": DEFAULT_MAX_DISTANCE,
               "default_neighbours": DEFAULT_NEIGHBOURS, "versions": versions,
               "has_duplicate_features": any(made_for_it for _, made_for_it in versions),
               "preparing": selectors.duplicate_features_preparing(criterion=criterion),
               "scan_reads_duplicate_features": scan is not None and selectors.duplicate_features(scan.version)}
    if finished:
        page = int_param(request.GET, "page", default=1, min_value=1, max_value=1_000_000)
        distance = float_param(request.GET, "distance", default=None, min_value=0.0, max_value=scan.max_distance,
                               label="Distance")
        mutual = int_param(request.GET, "mutual", default=None, min_value=1, max_value=100, label="Mutual neighbours")
        found = selectors.duplicate_groups(scan=scan, max_distance=distance, mutual=mutual,
                                           offset=(page - 1) * GROUPS_PER_PAGE, limit=GROUPS_PER_PAGE)
        pages = max(1, -(-found.group_count // GROUPS_PER_PAGE))
        mutual_choices = sorted({n for n in (1, 2, 3, 5) if n < scan.neighbours} | {scan.neighbours})
        context.update(found=found, page=page, pages=pages, first_number=(page - 1) * GROUPS_PER_PAGE + 1, distance=found.max_distance, mutual_choices=mutual_choices,
                       query=f"criterion={criterion.pk}&distance={found.max_distance:g}&mutual={found.mutual}")
    return render(request, "ranking/duplicates.html", context)


@login_required
@permission_required("ranking.manage_models", raise_exception=True)
@require_POST
def duplicates_scan(request: HttpRequest) -> HttpResponse:
    criterion = _criterion(request.POST)
    version_id = int_param(request.POST, "version")
    version = get_object_or_404(ModelVersion, pk=version_id, criterion=criterion) if version_id else None
    try:
        scan = duplicate_scan_start(
            criterion=criterion, version=version, created_by=request.user,
            max_distance=float_param(request.POST, "max_distance", default=DEFAULT_MAX_DISTANCE, min_value=0.001,
                                     max_value=1.0, label="Largest distance"),
            neighbours=int_param(request.POST, "neighbours", default=DEFAULT_NEIGHBOURS, min_value=1, max_value=100,
                                 label="Neighbours per image"))
        messages.success(request, f"Looking for near-duplicates among the images of version {scan.version_id}.")
    except (AppError, selectors.NoActiveVersion) as exc:
        messages.error(request, str(exc))
    return redirect(f"{reverse('duplicates')}?criterion={criterion.pk}")


@login_required
@permission_required("ranking.manage_models", raise_exception=True)
@require_POST
def duplicates_prepare(request: HttpRequest) -> HttpResponse:
    """Start the max-pooled pretrained features that scans read best (a version that embeds the library)."""
    criterion = _criterion(request.POST)
    try:
        version = duplicate_features_prepare(criterion=criterion, created_by=request.user)
        messages.success(request, f"Preparing version {version.pk}, features for near-duplicates: it embeds the "
                                  "library (follow it on the dashboard), then scan with it.")
    except AppError as exc:
        messages.error(request, str(exc))
    return redirect(f"{reverse('duplicates')}?criterion={criterion.pk}")
