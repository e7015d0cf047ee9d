"""The feature cache: a frozen backbone's output per image, computed once, reused, resumed, dropped with its last reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranking.models import FeatureExtractor, ImageFeature, ModelVersion
from ranking.nets import PretrainedFeatures
from ranking.query_encoder import embed_file
from ranking.selectors import embedding_vectors
from ranking.services import features as feature_service
from ranking.services.features import extractor_drop_if_unused, extractor_for_model, features_compute, features_load
from ranking.services.training import training_start, version_train
from ranking.services.versions import version_retire

pytestmark = pytest.mark.django_db


@pytest.fixture
def lite():
    return PretrainedFeatures("efficientnet_lite0", image_size=32, weights="imagenet").eval()


def _ids(library):
    return sorted(library["v"] + library["h"])


def test_features_are_computed_once_and_read_back_as_stored(stripes_library, lite):
    extractor = extractor_for_model(lite)
    assert (extractor.backbone, extractor.image_size, extractor.feature_dim, extractor.pixels_size) == (
        "efficientnet_lite0", 32, 1280, 8)
    assert extractor_for_model(lite) == extractor  # one entry per (backbone, weights, size)
    ids = _ids(stripes_library)
    assert features_compute(extractor=extractor, model=lite, image_ids=ids) == 16
    assert features_compute(extractor=extractor, model=lite, image_ids=ids) == 0  # nothing left to compute
    inputs, found = features_load(extractor=extractor, image_ids=ids[::-1])
    assert found == ids[::-1]  # in the order asked
    assert inputs.features.dtype == torch.float16 and inputs.features.shape == (16, 1280)
    assert inputs.pixels.dtype == torch.uint8 and inputs.pixels.shape == (16, 3, 8, 8)
    # the stored features are the backbone's, to fp16 precision
    from django.conf import settings

    from imagesearch.models import Image
    from ranking.data import load_image

    image = Image.objects.get(pk=ids[-1])
    x = load_image(settings.MEDIA_ROOT / image.file.name, 32)[None].float() / 255
    with torch.inference_mode():
        direct = lite.features(x)[0]
    assert torch.allclose(inputs.features[0].float(), direct, rtol=1e-2, atol=1e-2)


def test_random_weights_are_never_cached():
    assert extractor_for_model(PretrainedFeatures("efficientnet_lite0", image_size=32, weights=None)) is None


def test_a_pass_killed_midway_keeps_what_it_stored_and_the_next_computes_only_the_rest(
        stripes_library, lite, monkeypatch):
    extractor = extractor_for_model(lite)
    ids = _ids(stripes_library)
    monkeypatch.setattr(feature_service, "STORE_BATCH", 4)
    real_bulk_create = ImageFeature.objects.bulk_create
    calls = {"n": 0}

    def dies_on_the_third_batch(rows, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("worker killed")
        return real_bulk_create(rows, **kwargs)

    monkeypatch.setattr(ImageFeature.objects, "bulk_create", dies_on_the_third_batch)
    with pytest.raises(SystemExit):
        features_compute(extractor=extractor, model=lite, image_ids=ids)
    assert ImageFeature.objects.filter(extractor=extractor).count() == 8  # two batches stored
    monkeypatch.setattr(ImageFeature.objects, "bulk_create", real_bulk_create)
    seen = []
    assert features_compute(extractor=extractor, model=lite, image_ids=ids,
                            on_progress=lambda done, total: seen.append((done, total))) == 8
    assert seen[-1] == (8, 8)  # only the 8 missing were run through the backbone
    assert ImageFeature.objects.filter(extractor=extractor).count() == 16


def test_versions_embed_from_the_cache_as_the_network_embeds_a_file(stripes_library):
    from ranking.services.criteria import criterion_default

    criterion = criterion_default()
    pretrained = version_train(version_id=training_start(criterion=criterion, kind="pretrained", dispatch=False).pk,
                               embed="inline")
    assert pretrained.status == ModelVersion.Status.ACTIVE, pretrained.error
    extractor = pretrained.feature_extractor
    assert extractor is not None and ImageFeature.objects.filter(extractor=extractor).count() == 16
    # an upload of a library image lands on its stored (cache-computed) embedding
    from django.conf import settings

    from imagesearch.models import Image

    image = Image.objects.get(pk=stripes_library["v"][0])
    stored = embedding_vectors(version=pretrained, image_ids=[image.pk])[image.pk]
    uploaded = embed_file(version=pretrained, path=settings.MEDIA_ROOT / image.file.name)
    assert float(np.dot(stored, uploaded)) > 0.999


def test_the_cache_is_dropped_with_its_last_reader(stripes_library):
    from ranking.services.criteria import criterion_default

    criterion = criterion_default()
    first = version_train(version_id=training_start(criterion=criterion, kind="pretrained", dispatch=False).pk,
                          embed="inline")
    second = version_train(version_id=training_start(criterion=criterion, kind="pretrained", dispatch=False).pk,
                           embed="inline")
    assert first.feature_extractor_id == second.feature_extractor_id  # the second computed nothing new
    assert ImageFeature.objects.count() == 16
    version_retire(version_id=second.pk)
    assert FeatureExtractor.objects.filter(pk=first.feature_extractor_id).exists()  # the active one still reads it
    assert not extractor_drop_if_unused(extractor_id=first.feature_extractor_id)
    ModelVersion.objects.filter(pk=first.pk).update(status=ModelVersion.Status.READY)
    version_retire(version_id=first.pk)
    assert not FeatureExtractor.objects.exists() and not ImageFeature.objects.exists()


def test_a_refresh_job_shows_progress_within_a_chunk_while_the_backbone_runs(stripes_library, settings, monkeypatch):
    """A library's first pass was one chunk of 293 images: its job read 0 / 293 for 29 s, then 293."""
    from imagesearch.models import Job
    from imagesearch.services import jobs
    from ranking.services.criteria import criterion_default

    settings.RANKING_EMBED_CHUNK_SIZE = 64  # the 16 images in one chunk
    monkeypatch.setattr(feature_service, "STORE_BATCH", 4)
    reports = []
    real_report = jobs.job_report_part

    def recording(**kwargs):
        counted = real_report(**kwargs)
        reports.append((kwargs["done"], counted, Job.objects.get(pk=kwargs["job_id"]).progress_done))
        return counted

    monkeypatch.setattr(jobs, "job_report_part", recording)
    version = version_train(version_id=training_start(criterion=criterion_default(), kind="pretrained",
                                                      dispatch=False).pk, embed="inline")
    assert reports and reports[0] == (4, True, 4)  # the first batch of features shows at once
    job = Job.objects.get(pk=version.embedding_job_id)
    assert job.status == "succeeded" and job.progress_done == job.progress_total == 16  # counted once
