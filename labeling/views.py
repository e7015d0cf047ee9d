"""The labeling page: one triplet at a time, answered with the keyboard (the work happens in label.js),
within a focus the labeler picks from those offered; and the form that makes a focus (admins)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_POST

from imagesearch.errors import AppError
from imagesearch.params import InvalidParameter, int_param
from labeling import selectors
from labeling.services.focus import FocusNameTaken, focus_make
from ranking.models import SimilarityCriterion


@login_required
@permission_required("labeling.label", raise_exception=True)
@require_GET
def label(request: HttpRequest) -> HttpResponse:
    criteria = list(selectors.criteria_for_labeler(user=request.user))
    chosen = request.GET.get("criterion", "")
    criterion = next((c for c in criteria if str(c.pk) == chosen), criteria[0] if criteria else None)
    stats = selectors.labeler_stats(user=request.user, criterion=criterion) if criterion else None
    focuses = selectors.focuses_offered(criterion=criterion) if criterion else []
    focus_id = int_param(request.GET, "focus")
    focus = next((f for f in focuses if f.pk == focus_id), None)
    if focus_id and focus is None:
        raise InvalidParameter("focus", selectors.NO_SUCH_FOCUS)
    return render(request, "labeling/label.html", {"criteria": criteria, "criterion": criterion, "stats": stats,
                                                   "focuses": focuses, "focus": focus})


@login_required
@permission_required("labeling.manage_labeling", raise_exception=True)
@require_POST
def focus_make_from_page(request: HttpRequest) -> HttpResponse:
    """Make a focus from a page's form (a cluster, a search, a collection or a label) and open it for labeling."""
    form = request.POST
    criterion = get_object_or_404(SimilarityCriterion, pk=int_param(form, "criterion", default=0))
    try:
        focus = focus_make(criterion=criterion, kind=form.get("kind", ""), name=form.get("name", ""),
                           collection=int_param(form, "collection"), label=form.get("label", ""),
                           cluster=int_param(form, "cluster"), image=int_param(form, "image"),
                           count=int_param(form, "count", default=200, min_value=2, max_value=1000),
                           created_by=request.user)
    except FocusNameTaken as exc:  # made a moment ago (a second click): open it
        messages.info(request, f"The focus “{exc.focus.name}” exists already.")
        return redirect(f"{reverse('label')}?{urlencode({'criterion': criterion.pk, 'focus': exc.focus.pk})}")
    except AppError as exc:
        messages.error(request, str(exc))
        back = request.META.get("HTTP_REFERER", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = reverse("dashboard")
        return redirect(back)
    messages.success(request, f"Labelers can now choose the focus “{focus.name}”.")
    return redirect(f"{reverse('label')}?{urlencode({'criterion': criterion.pk, 'focus': focus.pk})}")
