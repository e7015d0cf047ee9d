"""Clusters and a 2-D map of embedding vectors (plain numpy and scikit-learn; no Django).

``map_layout`` is the whole computation: k-means on the unit vectors (the clusters), then a
projection to the plane for the map. The projection is t-SNE (openTSNE, FFT-accelerated) of the
vectors' first 50 principal components, fitted on at most ``fit_limit`` of them; the rest are
placed at the weighted mean of their nearest fitted neighbours, so the cost stops growing with
the library (``bench.maps``: t-SNE against UMAP and PCA, time and how well each keeps
neighbourhoods).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_FIT_LIMIT = 100_000
PCA_DIMENSIONS = 50
METHODS = ("tsne", "umap", "pca")
# below this many points t-SNE's layout collapses to its starting point (openTSNE's learning rate is n/12):
# the first two principal components show a small library better
MIN_TSNE_POINTS = 100

Progress = Callable[[str, float], None]  # (stage, share of the stage done 0..1)


@dataclass
class MapLayout:
    xy: np.ndarray  # (n, 2) float32, in [0, 1] on both axes, aspect kept
    clusters: np.ndarray  # (n,) int32: each vector's cluster
    centroids: np.ndarray  # (k, d) float32, unit length
    fitted: int  # vectors the projection was fitted on (the rest placed by their neighbours)
    method: str  # the projection used: the one asked for, or "pca" for fewer than MIN_TSNE_POINTS vectors


def cluster_count_auto(n: int) -> int:
    """Clusters for ``n`` images: about √(n/20), from 2 to 64 (a list a person can read)."""
    return int(min(64, max(2, round(math.sqrt(n / 20)))))


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical-ish k-means on unit vectors (cosine geometry): (cluster of each row, unit centroids).

    Mini-batches above 20,000 rows: a full k-means at a million rows is minutes per restart."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = unit(vectors)
    k = max(1, min(k, len(x)))
    if len(x) > 20_000:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=3, max_no_improvement=20)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    labels = model.fit_predict(x).astype(np.int32)
    return labels, unit(model.cluster_centers_)


def principal_components(vectors: np.ndarray, dimensions: int = PCA_DIMENSIONS, *, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = unit(vectors)
    dimensions = min(dimensions, x.shape[1], len(x))
    if dimensions >= x.shape[1]:
        return x - x.mean(0)
    return PCA(n_components=dimensions, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)


def project(vectors: np.ndarray, *, method: str = "tsne", seed: int = 0, fit_limit: int = DEFAULT_FIT_LIMIT,
            threads: int = 1, progress: Progress | None = None) -> tuple[np.ndarray, int, str]:
    """2-D positions of the vectors, in [0, 1], how many the projection was fitted on, and the method used."""
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}: one of {', '.join(METHODS)}")
    progress = progress or (lambda stage, done: None)
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2), np.float32), 0, method
    reduced = principal_components(vectors, seed=seed)
    rng = np.random.default_rng(seed)
    fitted = np.sort(rng.choice(n, fit_limit, replace=False)) if n > fit_limit else np.arange(n)
    if n < MIN_TSNE_POINTS or method == "pca":
        method = "pca"
        xy_fitted = _pad(reduced[fitted, :2])
    elif method == "tsne":
        xy_fitted = _tsne(reduced[fitted], seed=seed, threads=threads, progress=progress)
    else:
        xy_fitted = _umap(reduced[fitted], seed=seed, threads=threads)
    xy = np.zeros((n, 2), np.float32)
    xy[fitted] = xy_fitted
    if len(fitted) < n:
        progress("placing the rest", 0.0)
        rest = np.setdiff1d(np.arange(n), fitted)
        xy[rest] = _place_by_neighbours(reduced[fitted], xy_fitted, reduced[rest])
    return _normalise(xy), len(fitted), method


def _pad(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, np.float32)
    return xy if xy.shape[1] == 2 else np.concatenate([xy, np.zeros((len(xy), 2 - xy.shape[1]), np.float32)], 1)


def _tsne(x: np.ndarray, *, seed: int, threads: int, progress: Progress) -> np.ndarray:
    from openTSNE import TSNE

    iterations = {"early exaggeration": 250, "optimisation": 500}

    def callback(stage):
        def report(iteration, error, embedding):
            progress(stage, min(1.0, iteration / iterations[stage]))
            return False  # go on
        return report

    perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3.0)))
    progress("neighbours", 0.0)
    tsne = TSNE(perplexity=perplexity, n_jobs=threads, random_state=seed, verbose=False,
                neighbors="annoy" if len(x) > 1000 else "exact")
    # the two phases as two calls, so that each reports its own progress (fit() runs both behind one callback)
    affinities_embedding = tsne.prepare_initial(x)
    embedding = affinities_embedding.optimize(n_iter=iterations["early exaggeration"], exaggeration=12,
                                              momentum=0.5, callbacks=[callback("early exaggeration")],
                                              callbacks_every_iters=25, n_jobs=threads)
    embedding = embedding.optimize(n_iter=iterations["optimisation"], momentum=0.8,
                                   callbacks=[callback("optimisation")], callbacks_every_iters=25, n_jobs=threads)
    return np.asarray(embedding, dtype=np.float32)


def _umap(x: np.ndarray, *, seed: int, threads: int) -> np.ndarray:
    import umap

    return umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=seed, n_jobs=threads).fit_transform(x).astype(np.float32)


def _place_by_neighbours(fitted: np.ndarray, fitted_xy: np.ndarray, rest: np.ndarray, k: int = 5,
                         batch: int = 4096) -> np.ndarray:
    """Each row of ``rest`` at the distance-weighted mean position of its ``k`` nearest ``fitted`` rows."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=min(k, len(fitted))).fit(fitted)
    out = np.zeros((len(rest), 2), np.float32)
    for start in range(0, len(rest), batch):
        distance, nearest = index.kneighbors(rest[start:start + batch])
        weight = 1.0 / np.maximum(distance, 1e-6)
        weight /= weight.sum(1, keepdims=True)
        out[start:start + batch] = (fitted_xy[nearest] * weight[..., None]).sum(1)
    return out


def _normalise(xy: np.ndarray) -> np.ndarray:
    """Into [0, 1] on the longer axis, centred on the shorter; a few far outliers do not squash the rest."""
    if len(xy) == 0:
        return xy
    low, high = np.percentile(xy, 0.1, axis=0), np.percentile(xy, 99.9, axis=0)
    xy = np.clip(xy, low, high)
    span = float(max((high - low).max(), 1e-9))
    out = (xy - low) / span
    out += (1.0 - (high - low) / span) / 2.0
    return out.astype(np.float32)


def map_layout(vectors: np.ndarray, *, clusters: int | None = None, method: str = "tsne", seed: int = 0,
               fit_limit: int = DEFAULT_FIT_LIMIT, threads: int = 1, progress: Progress | None = None) -> MapLayout:
    """Clusters and 2-D positions of the vectors (see the module's docstring)."""
    progress = progress or (lambda stage, done: None)
    progress("clusters", 0.0)
    labels, centroids = kmeans(vectors, clusters or cluster_count_auto(len(vectors)), seed=seed)
    xy, fitted, used = project(vectors, method=method, seed=seed, fit_limit=fit_limit, threads=threads,
                               progress=progress)
    return MapLayout(xy=xy, clusters=labels, centroids=centroids, fitted=fitted, method=used)
