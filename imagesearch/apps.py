from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _roles_after_migrate(**kwargs) -> None:
    from imagesearch.services.accounts import roles_ensure

    roles_ensure()


class ImageSearchConfig(AppConfig):
    name = "imagesearch"
    verbose_name = "Image library"

    def ready(self) -> None:
        # roles_ensure creates the permissions it needs, so the apps' signal order does not matter
        post_migrate.connect(_roles_after_migrate, sender=self, dispatch_uid="imagesearch-roles")
