"""python manage.py import_judgments FILE [--criterion NAME] [--format jsonl|csv]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labeling.services.transfer import FORMATS, fmt_from_name, judgments_import
from ranking.models import SimilarityCriterion
from ranking.services.criteria import criterion_resolve


class Command(BaseCommand):
    help = ("Add judgments exported by export_judgments (here or on another installation) to a criterion; "
            "rows already here are not added again, and rows that cannot be imported are listed.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="a .jsonl or .csv file")
        parser.add_argument("--criterion", help="name or id; default: the default criterion")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, help="default: from FILE's extension")

    def handle(self, *args, file: str, criterion: str | None, fmt: str | None, **options):
        try:
            criterion_obj = criterion_resolve(criterion)
            fmt = fmt or fmt_from_name(file)
        except SimilarityCriterion.DoesNotExist:
            raise CommandError(f"No criterion {criterion!r}.") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            with open(file, encoding="utf-8", newline="") as text:
                report = judgments_import(criterion=criterion_obj, file=text, fmt=fmt)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        self.stdout.write(f"Imported {report.imported} judgments; {report.already_present} already present; "
                          f"{len(report.failed)} failed")
        # the import goes on past bad rows, so they are listed rather than made an error
        for line, reason in report.failed:
            self.stdout.write(f"  line {line}: {reason}")
