"""The admins' dashboard: criteria, model versions and their training, embedding and activation.

Every button posts to ``dashboard_action``, which calls one service and comes
back to the dashboard with a message; work that takes long (training, embedding,
retiring) is a Celery task, so the page answers at once and the jobs panel
(``static/js/jobs.js``, over ``/api/jobs/``) shows it progress live.
"""

from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from imagesearch import selectors as library_selectors
from imagesearch.api.serializers import JobOutputSerializer
from imagesearch.errors import AppError
from imagesearch.models import Collection, Document, Image, Job
from imagesearch.params import MAX_INTEGER, OUT_OF_RANGE, InvalidParameter, int_param, text_param
from imagesearch.services.jobs import job_cancel
from labeling import selectors as labeling_selectors
from labeling.models import TripletJudgment
from ranking import selectors
from ranking.charts import line_chart
from ranking.models import ModelVersion, SimilarityCriterion
from ranking.services.criteria import criterion_create, criterion_default
from ranking.services.hyperparameters import default_hyperparameters, resolved_backbone_mode, training_device_type
from ranking.services.training import training_start
from ranking.services.versions import version_activate, version_retire, version_rollback

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "efficientnet_b0")
# short enough for a select at 400 px; the README explains each
BACKBONE_MODES = {"frozen": "Frozen: head only (CPU)", "fine_tune": "Fine-tune last stage (GPU)",
                  "full": "Whole network (slow on CPU)"}
WEIGHTS = {"imagenet": "ImageNet", "": "Random (scratch)"}
# the deep-ranking form: field -> (type, label); defaults come from default_hyperparameters("ranking")
RANKING_FORM = {
    "backbone_mode": (str, "Backbone"),
    "backbone": (str, "Network"),
    "weights": (str, "Starting weights"),
    "image_size": (int, "Input size (px)"),
    "embedding_dim": (int, "Embedding size"),
    "margin": (float, "Margin"),
    "epochs": (int, "Epochs"),
    "lr": (float, "Learning rate"),
    "batch_size": (int, "Batch size"),
}


def _criterion(request: HttpRequest) -> SimilarityCriterion:
    criterion_id = int_param(request.GET, "criterion") or int_param(request.POST, "criterion")
    if criterion_id:
        return get_object_or_404(SimilarityCriterion, pk=criterion_id)
    return criterion_default()


@login_required
@permission_required("ranking.manage_models", raise_exception=True)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    criterion = _criterion(request)
    triplets = labeling_selectors.training_triplets(criterion=criterion)  # once, for the table and the estimate
    rows = selectors.dashboard_versions(criterion=criterion, triplets=triplets)
    for row in rows:
        row.loss_chart = line_chart(row.loss_points, label=f"Training loss of version {row.version.pk}",
                                    y_format="{:.4f}")
    accuracy_points = [(row.version.pk, row.val_accuracy) for row in reversed(rows) if row.val_accuracy is not None]
    defaults = default_hyperparameters(ModelVersion.Kind.RANKING)
    device = training_device_type()
    defaults["backbone_mode"] = resolved_backbone_mode(defaults, device)  # what "auto" becomes there
    defaults["weights"] = defaults.get("weights") or ""
    estimate = selectors.training_estimate(criterion=criterion, hyperparameters=defaults, device=device,
                                           triplets=triplets)
    return render(request, "ranking/dashboard.html", {
        "criteria": SimilarityCriterion.objects.order_by("pk"),
        "criterion": criterion,
        "rows": rows,
        "previous": selectors.previous_active_version(criterion_id=criterion.pk),
        "accuracy_chart": line_chart(accuracy_points, label="Held-out triplet accuracy across versions",
                                     x_name="version"),
        "ranking_form": [(name, label, defaults.get(name), kind is str) for name, (kind, label) in RANKING_FORM.items()],
        "backbones": BACKBONES, "backbone_modes": BACKBONE_MODES, "weight_choices": WEIGHTS,
        "device": device, "estimate": estimate,
        "sources": TripletJudgment.Source.choices,
        # as the jobs API gives them (and jobs.js redraws them): the row the documents page draws too
        "jobs": JobOutputSerializer(library_selectors.job_list()[:15], many=True, context={"request": request}).data,
        "overview": {
            "images": Image.objects.count(), "documents": Document.objects.count(),
            "collections": Collection.objects.count(),
            **labeling_selectors.judgments_per_source_and_labeler(criterion=criterion),
        },
        "per_day": labeling_selectors.judgments_per_day(criterion=criterion),
        "quality": labeling_selectors.labeler_quality(criterion=criterion),
        "focus_versions": (focus_versions := [row.version for row in rows
                                              if row.version.status in ModelVersion.EMBEDDED_STATUSES][:4]),
        "focus_rows": labeling_selectors.focus_rows(criterion=criterion, triplets=triplets, versions=focus_versions),
        "collections": Collection.objects.order_by("name"),
    })


@login_required
@permission_required("ranking.manage_models", raise_exception=True)
@require_POST
def dashboard_action(request: HttpRequest) -> HttpResponse:
    """One admin action; the message says what was started or why it was refused."""
    action = request.POST.get("action", "")
    criterion = _criterion(request)
    version_id = int_param(request.POST, "version")
    version = get_object_or_404(ModelVersion, pk=version_id, criterion=criterion) if version_id else None
    try:
        if action == "create_criterion":
            criterion = criterion_create(name=text_param(request.POST, "name"),
                                         question=text_param(request.POST, "question")
                                         or SimilarityCriterion._meta.get_field("question").default)
            messages.success(request, f"Created the criterion '{criterion.name}'.")
        elif action == "set_auto_retrain":
            # bounded by the column (PostgreSQL integer): a larger number failed in the database
            value = int_param(request.POST, "auto_retrain_after", default=0, max_value=MAX_INTEGER,
                              label="Retrain after (judgments; 0 turns it off)")
            SimilarityCriterion.objects.filter(pk=criterion.pk).update(auto_retrain_after=value)
            messages.success(request, f"Automatic retraining after {value} new judgments." if value
                             else "Automatic retraining is off.")
        elif action == "prepare_pretrained":
            new = training_start(criterion=criterion, kind=ModelVersion.Kind.PRETRAINED, created_by=request.user)
            messages.success(request, f"Preparing pretrained-features version {new.pk}: follow it under Jobs.")
        elif action == "train_autoencoder":
            new = training_start(criterion=criterion, kind=ModelVersion.Kind.AUTOENCODER, created_by=request.user)
            messages.success(request, f"Training autoencoder version {new.pk}: follow it under Jobs.")
        elif action == "train_ranking":
            new = training_start(criterion=criterion, kind=ModelVersion.Kind.RANKING, created_by=request.user,
                                 hyperparameters=_ranking_hyperparameters(request))
            messages.success(request, f"Training deep-ranking version {new.pk}: follow it under Jobs.")
        elif action == "refresh" and version is not None:
            from ranking.tasks import refresh_embeddings

            transaction.on_commit(lambda: refresh_embeddings.delay(version.pk))
            messages.success(request, f"Refreshing the embeddings of version {version.pk}: follow it under Jobs.")
        elif action == "activate" and version is not None:
            version_activate(version_id=version.pk)
            messages.success(request, f"Version {version.pk} is now active: searches use it.")
        elif action == "rollback":
            restored = version_rollback(criterion_id=criterion.pk)
            messages.success(request, f"Rolled back: version {restored.pk} is active again.")
        elif action == "retire" and version is not None:
            version_retire(version_id=version.pk, dispatch=True)
            messages.success(request, f"Retired version {version.pk}; its embeddings are being removed.")
        elif action == "cancel_job":
            job = get_object_or_404(Job, pk=int_param(request.POST, "job", default=0))
            job_cancel(job_id=job.pk, message=f"Cancelled by {request.user.get_username()}.")
            messages.success(request, f"Cancelled job {job.pk}.")
        else:
            messages.error(request, "Unknown action.")
    except (AppError, InvalidParameter, ValidationError) as exc:  # refusals; anything else is a bug: a 500
        text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
    return redirect(f"{reverse('dashboard')}?criterion={criterion.pk}")


def _ranking_hyperparameters(request: HttpRequest) -> dict:
    params = {}
    for name, (kind, label) in RANKING_FORM.items():
        value = text_param(request.POST, name, max_length=200, label=label)
        if not value:
            continue
        try:
            params[name] = kind(value)
        except ValueError:
            raise AppError(f"{label}: {value!r} is not a number.") from None
        # NaN and infinity cannot be stored as JSON; a job counts epochs in a database integer
        if kind is float and not math.isfinite(params[name]):
            raise AppError(f"{label}: {value!r} is not a number.")
        if kind is int and not 0 <= params[name] <= MAX_INTEGER:
            raise AppError(OUT_OF_RANGE.format(name=label, low=0, high=MAX_INTEGER))
    if params.get("backbone", BACKBONES[0]) not in BACKBONES:
        raise AppError(f"Unknown backbone {params['backbone']!r}.")
    if params.get("backbone_mode", "frozen") not in BACKBONE_MODES:
        raise AppError(f"Unknown backbone mode {params['backbone_mode']!r}.")
    weights = request.POST.get("weights")
    if weights is not None:
        if weights not in WEIGHTS:
            raise AppError(f"Unknown starting weights {weights!r}.")
        params["weights"] = weights or None
    min_accuracy = request.POST.get("min_gold_accuracy", "").strip()
    if min_accuracy:
        try:
            params["min_gold_accuracy"] = float(min_accuracy)
        except ValueError:
            raise AppError(f"Minimum gold accuracy: {min_accuracy!r} is not a number.") from None
        if not math.isfinite(params["min_gold_accuracy"]):
            raise AppError(f"Minimum gold accuracy: {min_accuracy!r} is not a number.")
    sources = [s for s in request.POST.getlist("judgment_sources") if s in TripletJudgment.Source.values]
    if sources and len(sources) < len(TripletJudgment.Source.values):
        params["judgment_sources"] = sources
    return params
