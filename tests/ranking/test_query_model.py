"""The query model of a web process: loaded once, even by concurrent first searches, and warmed at start."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image as PILImage

import ranking.checkpoints
from ranking import query_encoder
from ranking.query_encoder import active_models_warm, embed_file, version_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def cold_process(monkeypatch):
    """This process as a web worker that has loaded no network yet; counts the loads from now on."""
    monkeypatch.setattr(query_encoder, "_models", type(query_encoder._models)())
    loads = []
    real_load = ranking.checkpoints.load_model

    def counting_load(path):
        loads.append(path)
        return real_load(path)

    monkeypatch.setattr(ranking.checkpoints, "load_model", counting_load)
    return loads


def _jpeg() -> io.BytesIO:
    data = io.BytesIO()
    PILImage.new("RGB", (40, 30), (200, 30, 30)).save(data, "JPEG")
    data.seek(0)
    return data


def test_concurrent_first_searches_load_the_network_once(autoencoder, cold_process):
    start = threading.Barrier(6)
    vectors, errors = [], []

    def search() -> None:
        try:
            start.wait()
            vectors.append(embed_file(version=autoencoder, path=_jpeg()))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cold_process) == 1
    assert len(vectors) == 6 and all((v == vectors[0]).all() for v in vectors)


def test_warm_up_loads_the_active_network_before_any_search(autoencoder, cold_process):
    assert active_models_warm() == [autoencoder.pk]
    assert len(cold_process) == 1
    embed_file(version=autoencoder, path=_jpeg())
    version_model(autoencoder)
    assert len(cold_process) == 1  # the searches found it loaded


def test_warm_up_without_an_active_version_does_nothing(criterion, cold_process):
    assert active_models_warm() == []
    assert cold_process == []
