"""python manage.py refresh_embeddings [VERSION] [--inline]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from imagesearch.services.jobs import job_wait
from imagesearch.workers import workers_online
from ranking.models import ModelVersion
from ranking.selectors import active_version
from ranking.services.embeddings import embeddings_refresh_run_inline, embeddings_refresh_start


class Command(BaseCommand):
    help = "Embed every image that lacks an embedding under a model version (default: the active one)."

    def add_arguments(self, parser):
        parser.add_argument("version", nargs="?", type=int, help="model version id")
        parser.add_argument("--criterion", help="with no version: the criterion whose active version to use")
        parser.add_argument("--inline", action="store_true", help="embed in this process")

    def handle(self, *args, **options):
        try:
            version = (ModelVersion.objects.get(pk=options["version"]) if options["version"]
                       else active_version(criterion=options["criterion"]))
        except Exception as exc:
            raise CommandError(str(exc))
        inline = options["inline"] or not workers_online()
        try:
            job = embeddings_refresh_start(version_id=version.pk, dispatch=not inline)
        except ValueError as exc:
            raise CommandError(str(exc))
        self.stdout.write(job.message)
        if inline:
            embeddings_refresh_run_inline(job_id=job.pk)
        job = job_wait(job_id=job.pk)
        version.refresh_from_db()
        self.stdout.write(f"{job.message} Version {version.pk} is {version.status}.")
