"""python manage.py search IMAGE [--k 10] [--criterion NAME] [--collection ID] [--label L]

IMAGE is a library image id or the path of an image file.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ranking.selectors import NoActiveVersion, active_version, embed_file, image_search


class Command(BaseCommand):
    help = "Print the library images most similar to IMAGE (an image id or a file) under the active model."

    def add_arguments(self, parser):
        parser.add_argument("image", help="a library image id, or the path of an image file to search with")
        parser.add_argument("--k", type=int, default=10, help="how many results (default 10)")
        parser.add_argument("--criterion", help="the similarity criterion's name or id (default: the first)")
        parser.add_argument("--collection", type=int, help="only images of this collection (its id)")
        parser.add_argument("--label", help="only images with this label")
        parser.add_argument("--ef-search", type=int,
                            help="the HNSW index's search beam (default: RANKING_HNSW_EF_SEARCH); wider is slower "
                                 "and closer to exact")

    def handle(self, *args, **options):
        try:
            version = active_version(criterion=options["criterion"])
        except NoActiveVersion as exc:
            raise CommandError(str(exc))
        query = options["image"]
        kwargs = dict(version=version, k=options["k"], collection_id=options["collection"],
                      label=options["label"], ef_search=options["ef_search"])
        if query.isdigit() and not Path(query).exists():
            hits = image_search(image_id=int(query), **kwargs)
        else:
            try:
                hits = image_search(vector=embed_file(version=version, path=query), **kwargs)
            except OSError as exc:
                raise CommandError(f"cannot read {query}: {exc}")
        self.stdout.write(f"Version {version.pk} ({version.get_kind_display()}), {len(hits)} results. "
                          "closeness: how rare a pair this similar is among the library's; cosine: 1 = same direction.")
        self.stdout.write(f"{'rank':>4}  {'closeness':<12} {'cosine':>6}  image")
        for rank, hit in enumerate(hits, 1):
            image = hit.image
            where = f"  {image.document.title} p.{image.page_number}" if image.document_id else ""
            self.stdout.write(f"{rank:>4}  {hit.closeness_text:<12} {hit.score:>6.3f}  #{image.pk} {image.original_name}"
                              f"{f' [{image.label}]' if image.label else ''}{where}")
