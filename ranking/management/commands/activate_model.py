"""python manage.py activate_model VERSION | --list [--criterion NAME] | --retire VERSION"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ranking.models import ModelVersion
from ranking.selectors import dashboard_versions
from ranking.services.criteria import criterion_resolve
from ranking.services.versions import ActivationRefused, accuracy_text, version_activate, version_retire


class Command(BaseCommand):
    help = "Make a model version the one searches use (activating an older one rolls back), or list/retire versions."

    def add_arguments(self, parser):
        parser.add_argument("version", nargs="?", type=int, help="the version to activate (or retire); "
                                                                     "without it, the versions are listed")
        parser.add_argument("--list", action="store_true", help="list the criterion's versions")
        parser.add_argument("--criterion", help="the similarity criterion's name or id (default: the first)")
        parser.add_argument("--retire", action="store_true", help="retire VERSION: drop its embeddings and index")

    def handle(self, *args, **options):
        if options["list"] or options["version"] is None:
            self._list(criterion_resolve(options["criterion"]))
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

    def _list(self, criterion) -> None:
        """The dashboard's versions table: every version scored on the same held-out judged triplets."""
        rows = dashboard_versions(criterion=criterion)
        if not rows:
            self.stdout.write(f"'{criterion}' has no model versions yet.")
            return
        held_out = rows[0].held_out_triplets
        self.stdout.write(f"Versions of '{criterion}', newest first. Held-out accuracy: the share of the "
                          f"{held_out:,} held-out judged triplets that the version ranks as the judges did "
                          "(95 % interval); the same triplets for every version.")
        self.stdout.write(f"{'version':>7}  {'kind':<18} {'status':<10} {'embedded':>17}  held-out accuracy")
        for row in rows:
            v = row.version
            embedded = f"{row.embedded:,} / {row.library:,}" if v.status in ModelVersion.EMBEDDED_STATUSES else "—"
            accuracy = "—" if row.val_accuracy is None else accuracy_text(row.val_accuracy, held_out)
            self.stdout.write(f"{v.pk:>7}  {v.get_kind_display():<18} {v.status:<10} {embedded:>17}  {accuracy}")
