"""python manage.py activate_model VERSION | --list [--criterion NAME] | --retire VERSION"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ranking.models import ModelVersion
from ranking.selectors import version_list
from ranking.services.criteria import criterion_resolve
from ranking.services.versions import ActivationRefused, version_activate, version_retire


class Command(BaseCommand):
    help = "Make a model version the one searches use (activating an older one rolls back), or list/retire versions."

    def add_arguments(self, parser):
        parser.add_argument("version", nargs="?", type=int)
        parser.add_argument("--list", action="store_true", help="list the criterion's versions")
        parser.add_argument("--criterion")
        parser.add_argument("--retire", action="store_true", help="retire VERSION: drop its embeddings and index")

    def handle(self, *args, **options):
        if options["list"] or options["version"] is None:
            for v in version_list(criterion=criterion_resolve(options["criterion"])):
                acc = (v.metrics or {}).get("val_accuracy")
                self.stdout.write(f"{v.pk:>5}  {v.kind:<12} {v.status:<10} "
                                  f"{'' if acc is None else f'held-out acc {acc:.3f}'}")
            return
        try:
            if options["retire"]:
                version = version_retire(version_id=options["version"])
            else:
                version = version_activate(version_id=options["version"])
        except ModelVersion.DoesNotExist:
            raise CommandError(f"No model version {options['version']}.")
        except ActivationRefused as exc:
            raise CommandError(str(exc))
        self.stdout.write(self.style.SUCCESS(f"Version {version.pk} of '{version.criterion}' is {version.status}."))
