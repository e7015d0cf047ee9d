"""Training model versions: pretrained features, the autoencoder baseline and the deep-ranking network.

``training_start`` records a ModelVersion (status "training") and its Job and
queues the Celery task; ``version_train`` does the work in the worker (or in
process), writing a checkpoint each epoch so that a redelivered task resumes
where the dead worker stopped. A trained version goes on to embed the library
(``embeddings.embeddings_refresh_start``). A fresh library gets its first model
from ``first_models_start``. The hyperparameters are ``hyperparameters``'s, the
held-out scores ``evaluation``'s, the automatic loop ``auto_retrain``'s.
"""

from __future__ import annotations

import logging
import random
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imagesearch.models import Image, Job
from imagesearch.services.jobs import job_create, job_fail, job_finish, job_log, job_start
from ranking.models import ModelVersion, SimilarityCriterion
from ranking.services.evaluation import baseline_accuracies, judged_p_at_10, judged_p_at_10_cached, split_by_query
from ranking.services.hyperparameters import (
    MODEL_PARAMS,
    RANKING_MODE_DEFAULTS,
    hyperparameters_resolve,
    model_params,
    ranking_model_params,
    resolved_backbone_mode,
)
from ranking.services.versions import version_status_change

logger = logging.getLogger(__name__)

TRAIN_JOB_KIND = {ModelVersion.Kind.PRETRAINED: Job.Kind.PREPARE_PRETRAINED,
                  ModelVersion.Kind.AUTOENCODER: Job.Kind.TRAIN_AUTOENCODER, ModelVersion.Kind.RANKING: Job.Kind.TRAIN_RANKING}


# the fewest images a first model is made for: an autoencoder needs a batch to learn from; pretrained
# features need nothing but the images
FIRST_MODEL_MIN_IMAGES = {ModelVersion.Kind.PRETRAINED: 1, ModelVersion.Kind.AUTOENCODER: 128}


class TrainingError(Exception):
    """Training cannot run (too few judgments, no images ...); the message says why."""


class TrainingCancelled(Exception):
    pass


def training_start(
    *,
    criterion: SimilarityCriterion,
    kind: str,
    hyperparameters: dict | None = None,
    parent: ModelVersion | None = None,
    created_by=None,
    dispatch: bool = True,
) -> ModelVersion:
    """Record a new version and its training job; with ``dispatch``, queue the training task."""
    params = hyperparameters_resolve(kind=kind, hyperparameters=hyperparameters)
    if kind == ModelVersion.Kind.RANKING and parent is None:
        parent = _latest_ranking_version(criterion)
    with transaction.atomic():
        job = job_create(kind=TRAIN_JOB_KIND[kind], total=params["epochs"], created_by=created_by,
                         params={"criterion_id": criterion.pk}, message="Waiting for a worker.")
        version = ModelVersion.objects.create(
            criterion=criterion, kind=kind, hyperparameters=params, parent=parent,
            created_by=created_by, training_job=job,
        )
        job.params["version_id"] = version.pk
        job.save(update_fields=["params"])
        if dispatch:
            transaction.on_commit(lambda: training_task(kind).delay(version.pk))
    return version


def training_task(kind: str):
    """The Celery task that trains (or prepares) a version of this kind."""
    from ranking import tasks

    return {ModelVersion.Kind.PRETRAINED: tasks.prepare_pretrained, ModelVersion.Kind.AUTOENCODER:
            tasks.train_autoencoder, ModelVersion.Kind.RANKING: tasks.train_ranking}[kind]


def first_models_start() -> list[ModelVersion]:
    """Queue a first model (RANKING_FIRST_MODEL: pretrained features by default) for every criterion
    that has none yet, once the library holds enough images for that kind.

    Called when an import finishes, so that a fresh library gets its first model
    (and its first candidate triplets) without anyone asking. Off with
    RANKING_AUTO_TRAIN=0.
    """
    if not settings.RANKING_AUTO_TRAIN:
        return []
    kind = settings.RANKING_FIRST_MODEL
    if Image.objects.count() < FIRST_MODEL_MIN_IMAGES.get(kind, 1):
        return []
    started = []
    with transaction.atomic():
        for criterion in SimilarityCriterion.objects.select_for_update().order_by("pk"):
            if not criterion.versions.exists():
                started.append(training_start(criterion=criterion, kind=kind))
    return started


def _latest_ranking_version(criterion: SimilarityCriterion) -> ModelVersion | None:
    """The version a new ranking training continues from: the active one, else the newest trained."""
    trained = ModelVersion.objects.filter(
        criterion=criterion, kind=ModelVersion.Kind.RANKING, weights_file__gt=""
    ).exclude(status__in=[ModelVersion.Status.FAILED, ModelVersion.Status.RETIRED])
    return trained.filter(status=ModelVersion.Status.ACTIVE).first() or trained.order_by("-pk").first()


def version_train(*, version_id: int, embed: str = "dispatch") -> ModelVersion:
    """Train a version recorded by ``training_start``; then embed the library with it.

    ``embed``: "dispatch" queues the embedding chunks, "inline" runs them here,
    "no" leaves the version in status "embedding" with no refresh started.
    A version no longer "training" is left alone (a redelivered task).
    """
    from ranking.checkpoints import save_model

    version = ModelVersion.objects.select_related("criterion").get(pk=version_id)
    if version.status == ModelVersion.Status.EMBEDDING and version.embedding_job_id is None and embed != "no":
        # Trained, but the worker died before the refresh was started: start it now.
        _start_embedding(version, embed)
        return ModelVersion.objects.get(pk=version.pk)
    if version.status != ModelVersion.Status.TRAINING:
        return version
    job_id = version.training_job_id
    job_start(job_id=job_id)
    # said at once: the job was created "Waiting for a worker.", and its first epoch may end minutes from now
    job_log(job_id=job_id, line="Started: loading the pretrained backbone (nothing to train)."
            if version.kind == ModelVersion.Kind.PRETRAINED else "Started: preparing the training data.",
            as_message=True)
    started = time.monotonic()
    try:
        if version.kind == ModelVersion.Kind.PRETRAINED:
            model, metrics = _prepare_pretrained(version)
        elif version.kind == ModelVersion.Kind.AUTOENCODER:
            model, metrics = _train_autoencoder(version)
        else:
            model, metrics = _train_ranking(version)
    except TrainingCancelled:  # its job was cancelled, and the version failed with it (version_fail_with_its_job)
        version_status_change(to=ModelVersion.Status.FAILED, from_statuses=(ModelVersion.Status.TRAINING,),
                              version_id=version.pk, error="Cancelled.")
        return ModelVersion.objects.get(pk=version.pk)
    except Exception as exc:
        logger.exception("training version %s failed", version.pk)
        if isinstance(exc, TrainingError):
            error = str(exc)
            job_finish(job_id=job_id, status=Job.Status.FAILED, error=error)
        else:
            error = job_fail(job_id=job_id, exc=exc)
        # the failed job has failed the version already; this covers a job closed before (its worker taken for dead)
        version_status_change(to=ModelVersion.Status.FAILED, from_statuses=(ModelVersion.Status.TRAINING,),
                              version_id=version.pk, error=error)
        return ModelVersion.objects.get(pk=version.pk)

    metrics["seconds"] = round(time.monotonic() - started, 1)
    name = f"criterion-{version.criterion_id}/v{version.pk}.pt"
    version.refresh_from_db(fields=["hyperparameters"])
    params = model_params(version.kind, version.hyperparameters)
    sha = save_model(model, settings.RANKING_MODELS_DIR / name, kind=version.kind, params=params)
    from ranking.services.features import extractor_for_model

    extractor = extractor_for_model(model)  # embeddings computed from cached features
    with transaction.atomic():
        # Only a version still training moves on: one cancelled, failed (its worker was taken for
        # dead) or retired meanwhile stays so, and is not embedded.
        moved = version_status_change(
            to=ModelVersion.Status.EMBEDDING, from_statuses=(ModelVersion.Status.TRAINING,), version_id=version.pk,
            weights_file=name, weights_sha256=sha, embedding_dim=model.embedding_dim, metrics=metrics,
            trained_at=timezone.now(), feature_extractor=extractor,
        )
        if moved:
            job_finish(job_id=job_id, message=_training_summary(version, metrics), result=metrics)
    if not moved:
        logger.info("version %s ended while training: its weights are not used", version.pk)
        return ModelVersion.objects.get(pk=version.pk)
    _checkpoint_path(version).unlink(missing_ok=True)
    _checkpoint_path(version, "pretrain").unlink(missing_ok=True)
    _checkpoint_path(version, "fine_tune").unlink(missing_ok=True)
    if embed != "no":
        _start_embedding(version, embed)
    return ModelVersion.objects.get(pk=version.pk)


def _start_embedding(version: ModelVersion, embed: str) -> None:
    from ranking.services.embeddings import embeddings_refresh_run_inline, embeddings_refresh_start

    job = embeddings_refresh_start(version_id=version.pk, created_by=version.created_by, dispatch=embed == "dispatch")
    if embed == "inline":
        embeddings_refresh_run_inline(job_id=job.pk)


def _training_summary(version: ModelVersion, metrics: dict) -> str:
    if version.kind == ModelVersion.Kind.PRETRAINED:
        return f"Prepared version {version.pk} ({version.get_kind_display()}, {metrics['weights_init']}): no training."
    text = f"Trained version {version.pk} ({version.get_kind_display()}) in {metrics['seconds']:.0f} s"
    if metrics.get("val_accuracy") is not None:
        text += f"; held-out triplet accuracy {metrics['val_accuracy']:.3f}"
    return text + "."


def _checkpoint_path(version: ModelVersion, phase: str = "train"):
    return settings.RANKING_MODELS_DIR / f"criterion-{version.criterion_id}" / f"v{version.pk}-{phase}.ckpt"


def _config(version: ModelVersion, phase: str, **overrides):
    from ranking.training import TrainConfig

    hp = version.hyperparameters
    cfg = TrainConfig(
        epochs=hp["epochs"], batch_size=hp["batch_size"], lr=hp["lr"], seed=hp.get("seed", 0),
        device=settings.RANKING_DEVICE, checkpoint_path=str(_checkpoint_path(version, phase)),
    )
    for key in ("margin", "in_batch_weight", "in_batch_loss", "temperature", "patience"):
        if key in hp:
            setattr(cfg, key, hp[key])
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _phase_started(job_id: int, total: int) -> None:
    """A new phase of a training (the feature pass, an epoch loop) counts its own progress, and the
    ETA its own rate: the job's ``params["phase_started_at"]`` (see ``JobOutputSerializer``)."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        job.params = {**(job.params or {}), "phase_started_at": now.isoformat()}
        job.progress_done, job.progress_total, job.progress_at = 0, total, now
        job.save(update_fields=["params", "progress_done", "progress_total", "progress_at"])


def _progress(version: ModelVersion, phase: str, total_epochs: int):
    """An epoch callback that records progress and stops the training when its job was cancelled.

    Made as the phase starts: it says so, as nothing else is heard of the phase until its first epoch ends.
    """
    history: list[dict] = []
    if _checkpoint_path(version, phase).exists():
        job_log(job_id=version.training_job_id, line=f"{phase}: resuming from its last checkpoint.", as_message=True)
    else:
        _phase_started(version.training_job_id, total_epochs)
        job_log(job_id=version.training_job_id, line=f"{phase}: epoch 1 of {total_epochs} under way.",
                as_message=True)

    def on_epoch(epoch: int, metrics: dict) -> None:
        history.append(metrics)
        job = Job.objects.only("status").get(pk=version.training_job_id)
        if job.is_finished or not ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.TRAINING).exists():
            raise TrainingCancelled()  # cancelled, taken for dead, or retired: stop using the machine
        # progress counts the epochs of the phase under way (pretraining, then training)
        Job.objects.filter(pk=job.pk).update(
            progress_done=epoch + 1, progress_total=total_epochs, progress_at=timezone.now(), message=f"{phase}: epoch {epoch + 1} of {total_epochs}, "
            f"loss {metrics['loss']:.4f}" + (f", held-out accuracy {metrics['val_accuracy']:.3f}"
                                             if "val_accuracy" in metrics else ""),
        )
        ModelVersion.objects.filter(pk=version.pk).update(metrics={f"{phase}_history": history})
        job_log(job_id=job.pk, line=f"{phase} epoch {epoch + 1}/{total_epochs}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))

    return on_epoch


def _library_sample(max_images: int, seed: int) -> list[int]:
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    if len(ids) > max_images:
        ids = sorted(random.Random(seed).sample(ids, max_images))
    return ids


def _loading(version: ModelVersion, count: int, purpose: str = "") -> None:
    size = version.hyperparameters["image_size"]
    job_log(job_id=version.training_job_id, line=f"Loading {count:,} images at {size} px{purpose}.", as_message=True)


def _load(image_ids: list[int], size: int):
    """Images as a uint8 tensor in the order of ``image_ids``; unreadable files are an error."""
    from ranking.data import load_images

    names = dict(Image.objects.filter(pk__in=image_ids).values_list("pk", "file"))
    images, ok = load_images([settings.MEDIA_ROOT / names[i] for i in image_ids], size)
    if not bool(ok.all()):
        bad = [image_ids[i] for i in (~ok).nonzero().flatten().tolist()][:10]
        logger.warning("%d images could not be read and are blank in training (ids %s…)", int((~ok).sum()), bad)
    return images


def _prepare_pretrained(version: ModelVersion):
    """Nothing to learn: the backbone as it is, saved with the version so that it embeds like any other."""
    from ranking.nets import build_model

    hp = version.hyperparameters
    model = build_model("pretrained", **model_params("pretrained", hp))
    return model, {"weights_init": model.weights_used}


def _train_autoencoder(version: ModelVersion):
    from ranking.nets import build_model
    from ranking.training import fit_autoencoder, seed_everything

    hp = version.hyperparameters
    ids = _library_sample(hp["max_images"], hp.get("seed", 0))
    if len(ids) < hp["batch_size"]:
        raise TrainingError(f"The library has {len(ids)} images; the autoencoder needs at least {hp['batch_size']}.")
    _loading(version, len(ids))
    images = _load(ids, hp["image_size"])
    seed_everything(hp.get("seed", 0))  # the same seed, the same initial weights
    model = build_model("autoencoder", **{k: hp[k] for k in MODEL_PARAMS["autoencoder"]})
    result = fit_autoencoder(model, images, _config(version, "train"),
                             on_epoch=_progress(version, "train", hp["epochs"]))
    return model, {"train_history": result.history, "images": len(ids), "resumed_from_epoch": result.resumed_from_epoch}


def _train_ranking(version: ModelVersion):
    from labeling.selectors import training_triplets
    from ranking.checkpoints import load_model
    from ranking.nets import build_model
    from ranking.training import seed_everything

    hp = dict(version.hyperparameters)
    hp["backbone_mode"] = mode = resolved_backbone_mode(hp)
    for key, value in RANKING_MODE_DEFAULTS["full" if mode == "full" else "frozen"].items():
        if hp.get(key) is None:
            hp[key] = value
    if mode != "full" and not hp.get("weights"):
        raise TrainingError("A frozen or fine-tuned backbone needs pretrained weights (weights=imagenet or a file); "
                            "train from random initialisation with backbone_mode=full.")
    triplets = training_triplets(criterion=version.criterion, min_gold_accuracy=hp.get("min_gold_accuracy"),
                                 sources=hp.get("judgment_sources") or None)
    train, val = split_by_query(triplets, hp["val_fraction"], hp.get("seed", 0))
    if len(train) < hp["min_train_triplets"]:
        raise TrainingError(
            f"{len(train)} usable judged triplets for '{version.criterion}'; at least {hp['min_train_triplets']} "
            "are needed (answers 'can't tell' and ties are not used)."
        )
    ModelVersion.objects.filter(pk=version.pk).update(hyperparameters=hp)  # what "auto" and None became
    version.hyperparameters = hp
    parent = version.parent
    params = ranking_model_params(hp)
    start_from_parent = (
        parent is not None and parent.kind == ModelVersion.Kind.RANKING and parent.weights_file
        and ranking_model_params({**parent.hyperparameters, "weights": hp["weights"]}) == params
        and parent.hyperparameters.get("backbone_mode", "full") == mode
    )
    seed_everything(hp.get("seed", 0))
    model = build_model("ranking", **params)
    metrics: dict = {"weights_init": getattr(model, "weights_used", "random"), "backbone_mode": mode}
    if start_from_parent:
        parent_model, _, _ = load_model(settings.RANKING_MODELS_DIR / parent.weights_file)
        model.load_state_dict(parent_model.state_dict())
        metrics["weights_init"] = f"version {parent.pk}"
    if mode == "full":
        return model, _train_ranking_full(version, model, train, val, triplets, start_from_parent, metrics)
    return model, _train_ranking_head(version, model, train, val, metrics)


def _index(ids: list[int]):
    import torch

    position = {image_id: n for n, image_id in enumerate(ids)}
    return lambda rows: torch.tensor([[position[i] for i in row] for row in rows], dtype=torch.long).view(-1, 3)


def _train_ranking_head(version: ModelVersion, model, train, val, metrics: dict) -> dict:
    """The backbone frozen: features of the judged images from the cache (computed for those missing),
    the head trained on them; with fine-tuning, the last stages then learn on the images."""
    from ranking.services.features import extractor_for_model, features_compute, features_load
    from ranking.training import fit_ranking_fine_tune, fit_ranking_head

    hp = version.hyperparameters
    extractor = extractor_for_model(model)
    ModelVersion.objects.filter(pk=version.pk).update(feature_extractor=extractor)  # kept while it trains
    wanted = sorted({i for row in train + val for i in row})

    def progress(done: int, total: int) -> None:
        Job.objects.filter(pk=version.training_job_id).update(
            progress_done=done, progress_total=total, progress_at=timezone.now(),
            message=f"Computing the backbone's features: {done:,} of {total:,} images (once; cached for later).")

    _phase_started(version.training_job_id, 0)
    computed = features_compute(extractor=extractor, model=model, image_ids=wanted, on_progress=progress)
    inputs, found = features_load(extractor=extractor, image_ids=wanted)
    if len(found) < len(wanted):
        logger.warning("%d judged images could not be read; their triplets are left out", len(wanted) - len(found))
        usable = set(found)
        train = [t for t in train if all(i in usable for i in t)]
        val = [t for t in val if all(i in usable for i in t)]
    as_index = _index(found)
    job_log(job_id=version.training_job_id, line=f"Features of {len(found):,} judged images read from the cache "
            f"({computed:,} computed now); training the head on {len(train):,} triplets.", as_message=True)
    result = fit_ranking_head(model.head, inputs, as_index(train), _config(version, "train", patience=hp["patience"]),
                              as_index(val), on_epoch=_progress(version, "train", hp["epochs"]))
    metrics.update({"train_history": result.history, "best_epoch": result.best_epoch,
                    "resumed_from_epoch": result.resumed_from_epoch, "cached_features": len(found),
                    "features_computed": computed, "val_accuracy": result.best_accuracy})
    if hp["backbone_mode"] == "fine_tune" and hp["fine_tune_epochs"]:
        _loading(version, len(found), f" to fine-tune the backbone's last {hp['fine_tune_stages']} stage(s)")
        images = _load(found, hp["image_size"])
        cfg = _config(version, "fine_tune", epochs=hp["fine_tune_epochs"], patience=hp["patience"],
                      lr=hp["lr"])
        tuned = fit_ranking_fine_tune(model, images, as_index(train), cfg, as_index(val),
                                      on_epoch=_progress(version, "fine_tune", hp["fine_tune_epochs"]),
                                      stages=hp["fine_tune_stages"], backbone_lr_scale=hp["fine_tune_lr_scale"])
        metrics.update({"fine_tune_history": tuned.history, "val_accuracy": tuned.best_accuracy})
        if tuned.best_accuracy is not None and result.best_accuracy is not None \
                and tuned.best_accuracy < result.best_accuracy:
            job_log(job_id=version.training_job_id, line="Fine-tuning did not beat the frozen backbone on the "
                    "held-out triplets; kept anyway (the head alone is one click away: backbone_mode=frozen).")
        metrics["val_p_at_10"] = judged_p_at_10(model, images, as_index(val))
    else:
        metrics["val_p_at_10"] = judged_p_at_10_cached(model, inputs, as_index(val))
    metrics.update({"train_triplets": len(train), "val_triplets": len(val),
                    "baseline_val_accuracy": baseline_accuracies(criterion=version.criterion, triplets=val)})
    return metrics


def _train_ranking_full(version: ModelVersion, model, train, val, triplets, start_from_parent, metrics) -> dict:
    """The whole network learns on the images (from scratch with random weights), as before the cache."""
    import torch

    from ranking.training import fit_contrastive, fit_ranking

    hp = version.hyperparameters
    pretrain_ids = [] if start_from_parent or not hp["pretrain_epochs"] else _library_sample(
        hp["max_images"], hp.get("seed", 0))
    ids = sorted(set(pretrain_ids) | {i for row in triplets for i in row})
    as_index = _index(ids)
    _loading(version, len(ids), f" for {len(train):,} training triplets")
    images = _load(ids, hp["image_size"])
    if pretrain_ids:
        position = {image_id: n for n, image_id in enumerate(ids)}
        cfg = _config(version, "pretrain", epochs=hp["pretrain_epochs"], batch_size=hp["pretrain_batch_size"],
                      lr=hp["pretrain_lr"])
        subset = images[torch.tensor([position[i] for i in pretrain_ids])]
        result = fit_contrastive(model, subset, cfg, on_epoch=_progress(version, "pretrain", hp["pretrain_epochs"]))
        metrics["pretrain_history"] = result.history
        metrics["weights_init"] += f" + {hp['pretrain_epochs']} epochs self-supervised on {len(pretrain_ids)} images"
    cfg = _config(version, "train", patience=hp["patience"])
    result = fit_ranking(model, images, as_index(train), cfg, as_index(val),
                         on_epoch=_progress(version, "train", hp["epochs"]))
    metrics.update({
        "val_p_at_10": judged_p_at_10(model, images, as_index(val)),
        "train_history": result.history, "train_triplets": len(train), "val_triplets": len(val),
        "val_accuracy": result.best_accuracy, "best_epoch": result.best_epoch,
        "resumed_from_epoch": result.resumed_from_epoch,
        "baseline_val_accuracy": baseline_accuracies(criterion=version.criterion, triplets=val),
    })
    return metrics
