"""The feature pass on a real worker killed midway: what it stored stays, and the next pass computes only the rest."""

from __future__ import annotations

import pytest

from imagesearch.models import Image
from imagesearch.services.ingest import image_ingest_bytes
from ranking.models import Embedding, EmbeddingChunk, ImageFeature, ModelVersion
from ranking.services import features as feature_service
from ranking.services.embeddings import embeddings_refresh_start
from ranking.services.training import training_start, version_train
from tests import images
from tests.conftest import wait_for, worker_to_kill
from tests.factories import CollectionFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIBRARY_SIZE = 96  # twelve chunks of 8 (tests.settings): seconds of work, long enough to be killed in


def test_a_feature_pass_whose_worker_is_killed_resumes_with_only_the_missing_images(
        settings, criterion, tmp_path, monkeypatch):
    from ranking.tasks import embed_chunk

    collection = CollectionFactory(name="Stripes")
    for i in range(LIBRARY_SIZE):
        image_ingest_bytes(data=images.stripes(i % 2 == 0, seed=i), original_name=f"s{i}.png", collection=collection)
    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version = version_train(version_id=version.pk, embed="no")  # weights saved; its refresh is the feature pass
    assert version.status == ModelVersion.Status.EMBEDDING and version.feature_extractor_id is not None
    extractor = version.feature_extractor
    job = embeddings_refresh_start(version_id=version.pk, dispatch=False)
    chunk_ids = list(EmbeddingChunk.objects.filter(job=job).order_by("pk").values_list("pk", flat=True))
    assert len(chunk_ids) == LIBRARY_SIZE // 8

    log_path = tmp_path / "worker.log"
    with worker_to_kill(settings, log_path, "featurekill") as (queue, _):
        for chunk_id in chunk_ids:
            embed_chunk.apply_async((chunk_id,), queue=queue)
        wait_for(lambda: ImageFeature.objects.filter(extractor=extractor).count() >= 16,
                 what=f"the feature pass to store two chunks (worker log: {log_path})")
    # killed on leaving the block, as when its machine dies

    kept = ImageFeature.objects.filter(extractor=extractor).count()
    assert 16 <= kept < LIBRARY_SIZE, (kept, log_path.read_text()[-2000:])
    all_ids = list(Image.objects.values_list("pk", flat=True))
    assert len(feature_service.features_missing(extractor=extractor, image_ids=all_ids)) == LIBRARY_SIZE - kept

    # The next pass, here a second pretrained version of the same backbone (it has no embeddings of its
    # own, so it embeds the whole library): the backbone runs only over the images the first had not reached.
    computed = []
    real_compute = feature_service.features_compute

    def counting_compute(**kwargs):
        stored = real_compute(**kwargs)
        computed.append(stored)
        return stored

    monkeypatch.setattr(feature_service, "features_compute", counting_compute)
    second = version_train(version_id=training_start(criterion=criterion, kind="pretrained", dispatch=False).pk,
                           embed="inline")
    assert second.feature_extractor_id == extractor.pk
    assert sum(computed) == LIBRARY_SIZE - kept
    assert ImageFeature.objects.filter(extractor=extractor).count() == LIBRARY_SIZE
    assert second.status in (ModelVersion.Status.READY, ModelVersion.Status.ACTIVE), second.error
    assert Embedding.objects.filter(version=second).count() == LIBRARY_SIZE
