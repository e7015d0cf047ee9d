"""python manage.py search IMAGE [--k 10] [--criterion NAME] [--collection ID] [--label L] [--ef-search N]

IMAGE is a library image id or the path of an image file.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from imagesearch.imaging import ImageRejected
from imagesearch.models import Image
from imagesearch.selectors import SearchRefused, search_answer
from imagesearch.services.query_uploads import SearchQuery, search_query_upload


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
        query = options["image"]
        try:
            if query.isdigit() and not Path(query).exists():
                search_query = SearchQuery(image_id=int(query))
            else:
                path = Path(query)
                search_query = search_query_upload(data=path.read_bytes(), name=path.name, thumbnail=False)
            results = search_answer(query=search_query, criterion=options["criterion"], k=options["k"],
                                    collection_id=options["collection"], label=options["label"],
                                    ef_search=options["ef_search"])
        except Image.DoesNotExist:
            raise CommandError(f"No library image {query}.")
        except OSError as exc:
            raise CommandError(f"cannot read {query}: {exc}")
        except (ImageRejected, SearchRefused) as exc:
            raise CommandError(str(exc))
        version, hits = results.version, results.hits
        self.stdout.write(f"Version {version.pk} ({version.get_kind_display()}), {len(hits)} results. "
                          "closeness: how rare a pair this similar is among the library's; cosine: 1 = same direction.")
        self.stdout.write(f"{'rank':>4}  {'closeness':<12} {'cosine':>6}  image")
        for rank, hit in enumerate(hits, 1):
            image = hit.image
            where = f"  {image.document.title} p.{image.page_number}" if image.document_id else ""
            self.stdout.write(f"{rank:>4}  {hit.closeness_text:<12} {hit.score:>6.3f}  #{image.pk} {image.original_name}"
                              f"{f' [{image.label}]' if image.label else ''}{where}")
