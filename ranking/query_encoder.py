"""The query encoder of this process: what turns a query image into a vector, for searches.

Each version's network is loaded once per process and kept (a few at most, ``version_model``); a web
worker loads the active ones before its first request (``active_models_warm``). An uploaded query is
embedded once per version and its vector kept for its next page or the other side of a comparison
(``upload_vector``). Embedding the library in bulk is ``services.embeddings``; this module is the
small interface the search path (``imagesearch.selectors.search_answer``) uses.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings

from ranking.models import ModelVersion

_models: OrderedDict[tuple[int, str], tuple] = OrderedDict()
_models_lock = threading.Lock()  # guards _models and _loading, never held during a load
_loading: dict[tuple[int, str], threading.Lock] = {}  # one per version being loaded


def version_model(version: ModelVersion):
    """The version's network in eval mode and its parameters, kept for the next call (a few at most).

    Loaded once per process: concurrent first calls (a web worker's threads right after it
    starts) wait for the one load in progress rather than each loading and building the
    network again on the same cores, which is what made those searches take seconds.
    """
    from ranking.checkpoints import load_model

    key = (version.pk, version.weights_sha256)
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        loading = _loading.setdefault(key, threading.Lock())
    with loading:
        with _models_lock:
            if key in _models:  # loaded by the call we waited for
                return _models[key]
        model, _, params = load_model(Path(settings.RANKING_MODELS_DIR) / version.weights_file)
        with _models_lock:
            _models[key] = (model, params)
            _loading.pop(key, None)
            while len(_models) > 3:
                _models.popitem(last=False)
    return model, params


def active_models_warm() -> list[int]:
    """Load every active version's network and run it once on a small query; returns their ids.

    For a web process before it takes requests (``imagesearch/wsgi.py``): otherwise its first
    uploaded-image searches pay for importing torch, building and loading the network and
    the first forward pass (seconds on 2 cores, more while the other workers do the same).
    """
    import io

    from PIL import Image as PILImage

    warmed = []
    for version in ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).order_by("pk"):
        query = io.BytesIO()
        PILImage.new("RGB", (64, 48), (128, 128, 128)).save(query, "JPEG")
        query.seek(0)
        embed_file(version=version, path=query)
        warmed.append(version.pk)
    return warmed


def embed_file(*, version: ModelVersion, path: str | Path | BinaryIO) -> np.ndarray:
    """Embed an image file or file object (an upload, say) that need not be in the library."""
    from ranking.data import load_image
    from ranking.inference import embed_images, resolve_device

    model, params = version_model(version)
    image = load_image(path, params["image_size"])[None]
    return embed_images(model, image, resolve_device(settings.RANKING_DEVICE))[0].numpy()


_upload_vectors: OrderedDict[tuple, np.ndarray] = OrderedDict()
_upload_vectors_lock = threading.Lock()


def upload_vector(*, version: ModelVersion, token: str, path: str | Path) -> np.ndarray:
    """The embedding of the uploaded query kept under ``token`` (its file at ``path``), computed once
    per version and kept for the next 255 others. Raises FileNotFoundError when the file is gone."""
    key = (version.pk, version.weights_sha256, token)
    with _upload_vectors_lock:
        if key in _upload_vectors:
            _upload_vectors.move_to_end(key)
            return _upload_vectors[key]
    vector = embed_file(version=version, path=path)
    with _upload_vectors_lock:
        _upload_vectors[key] = vector
        while len(_upload_vectors) > 256:
            _upload_vectors.popitem(last=False)
    return vector
