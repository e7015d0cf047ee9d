from django.apps import AppConfig


class RankingConfig(AppConfig):
    name = "ranking"
    verbose_name = "Ranking models"

    def ready(self) -> None:
        from imagesearch.services.jobs import job_end_hook
        from ranking.services.embeddings import embedding_chunks_drop_pending
        from ranking.services.versions import version_fail_with_its_job

        job_end_hook(version_fail_with_its_job)
        job_end_hook(embedding_chunks_drop_pending)
