"""python manage.py export_judgments OUT [--criterion NAME] [--format jsonl|csv]   (OUT "-": standard output)"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labeling.services.transfer import FORMATS, fmt_from_name, judgments_export
from ranking.models import SimilarityCriterion
from ranking.services.criteria import criterion_resolve


class Command(BaseCommand):
    help = "Write a criterion's judgments, images named by SHA-256, for import_judgments on another installation."

    def add_arguments(self, parser):
        parser.add_argument("out", help='a .jsonl or .csv file, or "-" for standard output')
        parser.add_argument("--criterion", help="name or id; default: the default criterion")
        parser.add_argument("--format", dest="fmt", choices=FORMATS,
                            help="default: from OUT's extension (JSON Lines for -)")

    def handle(self, *args, out: str, criterion: str | None, fmt: str | None, **options):
        try:
            criterion_obj = criterion_resolve(criterion)
            fmt = fmt or ("jsonl" if out == "-" else fmt_from_name(out))
        except SimilarityCriterion.DoesNotExist:
            raise CommandError(f"No criterion {criterion!r}.") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if out == "-":
            count = judgments_export(criterion=criterion_obj, out=self.stdout, fmt=fmt)
            # the rows own standard output
            self.stderr.write(f"Exported {count} judgments of '{criterion_obj.name}'.")
            return
        # newline="": the csv module writes its own line endings
        with open(out, "w", encoding="utf-8", newline="") as file:
            count = judgments_export(criterion=criterion_obj, out=file, fmt=fmt)
        self.stdout.write(f"Exported {count} judgments of '{criterion_obj.name}' to {out}.")
