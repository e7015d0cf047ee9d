"""python manage.py train [--kind autoencoder|ranking] [--criterion NAME] [--set KEY=VALUE ...] [--inline]"""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from imagesearch.models import Job
from imagesearch.services.jobs import job_cancel
from imagesearch.workers import workers_online
from ranking.models import ModelVersion
from ranking.services.criteria import criterion_resolve
from ranking.services.hyperparameters import default_hyperparameters
from ranking.services.training import training_start, version_train


def parse_settings(pairs: list[str]) -> dict:
    """KEY=VALUE pairs, each VALUE read as JSON when it parses (numbers, null, true) and as text otherwise."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CommandError(f"--set takes KEY=VALUE, not {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class Command(BaseCommand):
    help = (
        "Train a new model version for a similarity criterion, then embed the library with it. "
        "Runs on a Celery worker consuming the 'gpu' queue when one is online, else in this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=ModelVersion.Kind.values, default=ModelVersion.Kind.RANKING)
        parser.add_argument("--criterion", help="name or id (default: the first criterion)")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override a hyperparameter (see --list-hyperparameters)")
        parser.add_argument("--list-hyperparameters", action="store_true")
        parser.add_argument("--inline", action="store_true", help="train and embed in this process")
        parser.add_argument("--no-wait", action="store_true", help="queue the training and return")
        parser.add_argument("--resume", type=int, metavar="VERSION",
                            help="finish a version left 'training' by a dead worker, from its last checkpoint")

    def handle(self, *args, **options):
        if options["list_hyperparameters"]:
            self.stdout.write(json.dumps(default_hyperparameters(options["kind"]), indent=2))
            return
        inline = options["inline"] or not workers_online(queue="gpu")
        if inline and not options["inline"]:
            self.stderr.write("No Celery worker consumes the 'gpu' queue; training in this process.")
        if options["resume"]:
            version = self._resumable(options["resume"], dispatch=not inline)
        else:
            criterion = criterion_resolve(options["criterion"])
            try:
                version = training_start(criterion=criterion, kind=options["kind"],
                                         hyperparameters=parse_settings(options["set"]), dispatch=not inline)
            except ValueError as exc:
                raise CommandError(str(exc))
        self.stdout.write(f"Version {version.pk} ({version.get_kind_display()}) for '{version.criterion}'.")
        if options["no_wait"] and not inline:
            return
        try:
            if inline:
                version = version_train(version_id=version.pk, embed="inline")
            else:
                version = self._wait(version)
        except KeyboardInterrupt:
            job_cancel(job_id=version.training_job_id, message="Interrupted by the user.")
            raise CommandError(f"Interrupted: training of version {version.pk} cancelled.")
        if version.status == ModelVersion.Status.FAILED:
            raise CommandError(f"Training version {version.pk} failed: {version.error}")
        self.stdout.write(self.style.SUCCESS(describe(version)))

    @staticmethod
    def _resumable(version_id: int, dispatch: bool) -> ModelVersion:
        version = ModelVersion.objects.filter(pk=version_id).first()
        if version is None or version.status != ModelVersion.Status.TRAINING:
            raise CommandError(f"Version {version_id} is not waiting for training.")
        if dispatch:
            from ranking.services.training import training_task

            training_task(version.kind).delay(version.pk)
        return version

    def _wait(self, version: ModelVersion) -> ModelVersion:
        last = ""
        while True:
            version.refresh_from_db()
            job_id = version.embedding_job_id or version.training_job_id
            job = Job.objects.get(pk=job_id)
            if job.message != last:
                self.stdout.write(job.message)
                last = job.message
            if version.status not in (ModelVersion.Status.TRAINING, ModelVersion.Status.EMBEDDING):
                return version
            time.sleep(1)


def describe(version: ModelVersion) -> str:
    metrics = version.metrics or {}
    parts = [f"Version {version.pk} is {version.status}"]
    if metrics.get("val_accuracy") is not None:
        parts.append(f"held-out triplet accuracy {metrics['val_accuracy']:.3f} on {metrics['val_triplets']} triplets")
        for key, value in (metrics.get("baseline_val_accuracy") or {}).items():
            if value is not None:
                parts.append(f"{key} version {value:.3f}")
    if metrics.get("seconds") is not None:
        parts.append(f"trained in {metrics['seconds']:.0f} s")
    return "; ".join(parts) + "."
