"""The labeling page: one triplet at a time, answered with the keyboard (the work happens in label.js)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labeling import selectors


@login_required
@permission_required("labeling.label", raise_exception=True)
@require_GET
def label(request: HttpRequest) -> HttpResponse:
    criteria = list(selectors.criteria_for_labeler(user=request.user))
    chosen = request.GET.get("criterion", "")
    criterion = next((c for c in criteria if str(c.pk) == chosen), criteria[0] if criteria else None)
    stats = selectors.labeler_stats(user=request.user, criterion=criterion) if criterion else None
    return render(request, "labeling/label.html", {"criteria": criteria, "criterion": criterion, "stats": stats})
