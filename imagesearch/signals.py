"""What the library tells other apps, so that the importer needs to know none of them.

Ranking listens (``ranking.apps.RankingConfig.ready``): it embeds new images with the versions
in use, and gives a fresh library its first model when an import finishes.
"""

from __future__ import annotations

from django.dispatch import Signal

# sent inside the transaction that adds the images' rows; kwargs: image_ids (list[int])
images_added = Signal()
# sent inside the transaction that closes an import job; kwargs: job_id (int), imported (int: images added)
import_finished = Signal()
