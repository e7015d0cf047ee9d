"""A library's first model goes live even when images keep arriving while it embeds the library."""

from __future__ import annotations

import pytest

from imagesearch.models import Collection, Job
from imagesearch.services.ingest import image_ingest_bytes
from ranking.models import ModelVersion
from ranking.selectors import NoActiveVersion, active_version
from ranking.services.embeddings import (
    embeddings_add_new_images, embeddings_refresh_run_inline, embeddings_refresh_start,
)
from ranking.services.training import training_start, version_train
from tests import images

pytestmark = pytest.mark.django_db


def test_images_imported_during_the_first_refresh_are_not_failures_and_it_goes_live_once_they_are_in(
        stripes_library, criterion):
    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version = version_train(version_id=version.pk, embed="no")  # weights saved, no refresh yet
    job = embeddings_refresh_start(version_id=version.pk, dispatch=False)  # its chunks list the 16 images
    # a second import lands while the refresh runs: its images are not among the chunks
    late = image_ingest_bytes(data=images.stripes(True, seed=901), original_name="late.png",
                              collection=Collection.objects.first()).image_ids
    embeddings_refresh_run_inline(job_id=job.pk)
    job.refresh_from_db()
    version.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert "could not be read" not in job.message and "1 images imported meanwhile" in job.message
    assert job.result == {"missing": 0, "arriving": 1}
    assert version.status == ModelVersion.Status.READY  # not live with an image it lacks
    with pytest.raises(NoActiveVersion, match=f"version {version.pk} is ready"):
        active_version(criterion=criterion)
    embeddings_add_new_images(image_ids=late)  # what the late import's task does
    assert active_version(criterion=criterion).pk == version.pk
