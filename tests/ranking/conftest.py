from __future__ import annotations

import pytest

from imagesearch.services.ingest import image_ingest_bytes
from tests import images
from tests.factories import CollectionFactory

# Small, fast networks: the tests check behaviour, not accuracy.
TINY_AUTOENCODER = {"epochs": 2, "batch_size": 8, "width": 8, "embedding_dim": 8}
TINY_RANKING = {"epochs": 3, "batch_size": 8, "embedding_dim": 16, "pretrain_epochs": 1, "pretrain_batch_size": 16,
                "min_train_triplets": 4, "val_fraction": 0.25}


@pytest.fixture
def stripes_library(db):
    """16 images in two classes (vertical / horizontal stripes), labelled "v" and "h", in two collections."""
    ids = {"v": [], "h": []}
    collections = [CollectionFactory(name="North"), CollectionFactory(name="South")]
    for i in range(16):
        label = "v" if i % 2 == 0 else "h"
        outcome = image_ingest_bytes(data=images.stripes(label == "v", seed=i), original_name=f"{label}{i}.png",
                                     collection=collections[i % 4 // 2], label=label)
        ids[label] += outcome.image_ids
    return ids


@pytest.fixture
def criterion(db):
    from ranking.services.criteria import criterion_default

    return criterion_default()


@pytest.fixture
def autoencoder(stripes_library, criterion):
    """A trained, embedded and (as the first version) active autoencoder."""
    from ranking.services.training import training_start, version_train

    version = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                             dispatch=False)
    return version_train(version_id=version.pk, embed="inline")
