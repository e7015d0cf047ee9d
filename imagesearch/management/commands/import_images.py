"""python manage.py import_images PATH... [--collection NAME] [--label-from-folder]"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from imagesearch.models import Job
from imagesearch.services.ingest import ingest_job_create, ingest_job_run
from imagesearch.services.library import DEFAULT_COLLECTION
from imagesearch.services.jobs import job_cancel, job_wait
from imagesearch.workers import workers_online

MAX_LISTED_FAILURES = 50


class Command(BaseCommand):
    help = (
        "Import images from files, folders (recursively) and .zip archives. Files already "
        "in the library are skipped; unreadable files are listed with the reason. PDFs met on "
        "the way are imported as documents (see import_documents)."
    )
    unit = "img"

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection name (created if new)")
        parser.add_argument(
            "--label-from-folder", action="store_true", help="label each image with its parent folder's name"
        )
        parser.add_argument(
            "--inline", action="store_true",
            help="import in this process instead of on the Celery workers",
        )
        parser.add_argument("--chunk-size", type=int, default=None,
                            help="image files per Celery task (each document is a task of its own)")

    def handle(self, *args, **options):
        job = ingest_job_create(
            paths=options["paths"],
            collection_name=options["collection"],
            label_from_folder=options["label_from_folder"],
            chunk_size=options["chunk_size"],
        )
        inline = options["inline"] or not self._workers_online()
        bar = tqdm(total=job.progress_total, unit=self.unit, desc="Importing", file=sys.stderr, smoothing=0.1)
        try:
            if inline:
                ingest_job_run(job_id=job.pk, inline=True, on_chunk_done=lambda: self._update(bar, job.pk))
            else:
                ingest_job_run(job_id=job.pk)
                job_wait(job_id=job.pk, poll_seconds=0.2, on_poll=lambda j: self._show(bar, j))
        except KeyboardInterrupt:
            job_cancel(job_id=job.pk, message="Interrupted by the user.")
            bar.close()
            raise CommandError(f"Interrupted: import job #{job.pk} cancelled; run the command again to finish.")
        self._update(bar, job.pk)
        bar.close()
        self._report(Job.objects.get(pk=job.pk))

    def _workers_online(self) -> bool:
        online = workers_online()
        if not online:
            self.stderr.write("No Celery worker answered; importing in this process.")
        return online

    def _update(self, bar: tqdm, job_id: int) -> None:
        self._show(bar, Job.objects.get(pk=job_id))

    @staticmethod
    def _show(bar: tqdm, job: Job) -> None:
        bar.update(job.progress_done - bar.n)

    def _report(self, job: Job) -> None:
        if job.status == Job.Status.FAILED:
            raise CommandError(f"Import job #{job.pk} failed: {job.error}")
        self.stdout.write(job.message)
        issues = list(job.issues.all()[: MAX_LISTED_FAILURES + 1])
        for issue in issues[:MAX_LISTED_FAILURES]:
            self.stdout.write(f"  skipped {issue.source}: {issue.message}")
        if len(issues) > MAX_LISTED_FAILURES:
            total = job.issues.count()
            self.stdout.write(f"  … and {total - MAX_LISTED_FAILURES} more (job #{job.pk}).")
