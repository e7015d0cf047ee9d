from django.apps import AppConfig


class RankingConfig(AppConfig):
    name = "ranking"
    verbose_name = "Ranking models"

    def ready(self) -> None:
        """Ranking hears of the library's events through hooks and signals; the library imports nothing of it."""
        from imagesearch.services.jobs import job_end_hook
        from imagesearch.signals import images_added, import_finished

        job_end_hook(_imported_when_called("ranking.services.versions.version_fail_with_its_job"))
        job_end_hook(_imported_when_called("ranking.services.embeddings.embedding_chunks_drop_pending"))
        images_added.connect(_embed_new_images, dispatch_uid="ranking-embed-new-images")
        import_finished.connect(_first_models, dispatch_uid="ranking-first-models")


def _embed_new_images(sender, *, image_ids: list[int], **kwargs) -> None:
    from ranking.services.embeddings import embeddings_schedule_new_images

    embeddings_schedule_new_images(image_ids=image_ids)


def _first_models(sender, *, job_id: int, imported: int, **kwargs) -> None:
    """A fresh library gets its first model when an import that added images finishes."""
    if imported:
        from ranking.services.training import first_models_start

        first_models_start()


def _imported_when_called(path: str):
    """The function at ``path``, imported at its first call: every process (a command, a web worker)
    starts without the ranking services and what they import (numpy, the selectors): 0.2 s a start."""
    from django.utils.module_loading import import_string

    def call(*args, **kwargs):
        return import_string(path)(*args, **kwargs)

    return call
