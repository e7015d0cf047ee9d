"""Clusters and a map of a version's embeddings, computed by one job and stored.

``map_start`` records an ``EmbeddingMap`` and its job; ``map_compute`` (the Celery task
``ranking.compute_map``, or inline) reads the version's vectors, clusters and projects them
(``ranking.projection.map_layout``: k-means, then t-SNE fitted on at most ``MAP_FIT_LIMIT`` of
them) and writes a ``MapPoint`` per image and a ``MapCluster`` per cluster, numbered by size.
A map is computed once per version; a newer one replaces it on the pages. Each version that
becomes active gets one (``map_start_if_missing``, from ``versions.version_activate``).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from imagesearch.errors import AppError
from imagesearch.models import Job
from imagesearch.services.jobs import job_advance, job_create, job_fail, job_finish, job_log, job_start
from ranking.models import EmbeddingMap, MapCluster, ModelVersion
from ranking.projection import map_layout

logger = logging.getLogger(__name__)

REPRESENTATIVES = 8  # thumbnails per cluster on the cluster list
NO_EMBEDDINGS = "Version {version} has no embeddings yet: its map is drawn once the library is embedded."


def map_start(*, version: ModelVersion, method: str | None = None, created_by=None,
              dispatch: bool = True) -> EmbeddingMap:
    """Start computing the version's clusters and map; a map of it already under way is returned instead."""
    method = method or settings.MAP_METHOD
    if method not in EmbeddingMap.Method.values:
        raise AppError(f"The projection is one of {', '.join(EmbeddingMap.Method.values)}.")
    if not version.embeddings.exists():
        raise AppError(NO_EMBEDDINGS.format(version=version.pk))
    with transaction.atomic():
        ModelVersion.objects.select_for_update().filter(pk=version.pk).first()  # one start at a time per version
        running = (EmbeddingMap.objects.filter(version=version, job__status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
                   .first())
        if running is not None:
            return running
        job = job_create(kind=Job.Kind.MAP, total=100, created_by=created_by,
                         params={"version_id": version.pk, "criterion_id": version.criterion_id},
                         message=f"Clustering and mapping the images of version {version.pk}.")
        embedding_map = EmbeddingMap.objects.create(version=version, job=job, method=method, created_by=created_by)
        if dispatch:
            transaction.on_commit(lambda: _send(embedding_map))
    return embedding_map


def _send(embedding_map: EmbeddingMap) -> None:
    from ranking.tasks import compute_map

    try:
        compute_map.delay(embedding_map.pk)
    except Exception as exc:  # noqa: BLE001 - no broker (a command run without `serve`): say so on the map's job
        logger.exception("could not queue the map of version %s", embedding_map.version_id)
        job_fail(job_id=embedding_map.job_id, exc=RuntimeError(
            f"The map could not be queued ({exc}); compute it again from the map page once the workers run."))


def map_start_if_missing(*, version: ModelVersion) -> EmbeddingMap | None:
    """A map for a version that has none (done or under way), when ``MAP_AUTO`` is on."""
    if not settings.MAP_AUTO or EmbeddingMap.objects.filter(version=version).exclude(
            job__status__in=[Job.Status.FAILED, Job.Status.CANCELLED]).exists():
        return None
    try:
        return map_start(version=version)
    except AppError:
        return None  # nothing embedded yet


def map_compute(*, map_id: int) -> None:
    """Compute and store the map's clusters and points. Safe to run again: a redelivered task starts over,
    a finished map is left alone. A failure closes the job as failed."""
    embedding_map = EmbeddingMap.objects.select_related("version", "job").filter(pk=map_id).first()
    if embedding_map is None or embedding_map.job is None or embedding_map.job.is_finished:
        return
    job_id = embedding_map.job_id
    job_start(job_id=job_id)
    try:
        _compute(embedding_map)
    except Exception as exc:
        job_fail(job_id=job_id, exc=exc)
        raise


# the share of the job's bar each stage ends at
_STAGE_ENDS = {"reading": 5, "clusters": 15, "neighbours": 25, "early exaggeration": 45, "optimisation": 85,
               "placing the rest": 90, "storing": 100}


def _compute(embedding_map: EmbeddingMap) -> None:
    job_id, started = embedding_map.job_id, time.monotonic()
    shown = {"done": 0, "stage": ""}

    def progress(stage: str, done: float) -> None:
        ends = list(_STAGE_ENDS)
        start = _STAGE_ENDS[ends[ends.index(stage) - 1]] if ends.index(stage) else 0
        percent = int(start + (_STAGE_ENDS[stage] - start) * done)
        if stage != shown["stage"]:
            shown["stage"] = stage
            job_log(job_id=job_id, line=f"{stage.capitalize()}…", as_message=True)
        if percent > shown["done"]:
            job_advance(job_id=job_id, done=percent - shown["done"])
            shown["done"] = percent

    progress("reading", 0.0)
    image_ids, vectors = _version_vectors(embedding_map.version)
    if not len(image_ids):
        raise AppError(NO_EMBEDDINGS.format(version=embedding_map.version_id))
    layout = map_layout(vectors, method=embedding_map.method, seed=embedding_map.pk,
                        fit_limit=settings.MAP_FIT_LIMIT, threads=os.cpu_count() or 1, progress=progress)
    progress("storing", 0.0)
    cluster_count = _store(embedding_map, image_ids, vectors, layout)
    progress("storing", 1.0)
    seconds = time.monotonic() - started
    EmbeddingMap.objects.filter(pk=embedding_map.pk).update(
        point_count=len(image_ids), cluster_count=cluster_count, fitted_count=layout.fitted, method=layout.method)
    embedding_map.method = layout.method
    fitted = "" if layout.fitted == len(image_ids) else f", fitted on {layout.fitted:,} of them"
    job_finish(job_id=job_id, message=f"Mapped {len(image_ids):,} images in {cluster_count} clusters "
                                      f"({embedding_map.get_method_display()}{fitted}) in {seconds:.0f} s.")


def _version_vectors(version: ModelVersion) -> tuple[np.ndarray, np.ndarray]:
    """All of the version's embeddings, as (image ids, float32 matrix), in image id order.

    Read as one binary COPY whose rows all have the same size (an int8 id, a vector of the version's
    dimension), so numpy reads them as they come: a million 256-d vectors in seconds and 1 GB, where
    fetching them as rows built 256 million Python floats first."""
    dim = int(version.embedding_dim)
    row = np.dtype([("fields", ">i2"), ("id_length", ">i4"), ("id", ">i8"), ("vector_length", ">i4"),
                    ("dim", ">i2"), ("unused", ">i2"), ("vector", ">f4", (dim,))])
    header = 19  # PGCOPY signature (11 bytes), flags, header extension length
    pending, done = bytearray(), 0
    outer = connection.in_atomic_block  # a caller's transaction (a test's) has its own snapshot rules
    with transaction.atomic(), connection.cursor() as cursor:
        if not outer:  # one snapshot for the count and the rows: new images are embedded while a map is computed
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(f"SELECT count(*) FROM ranking_embedding WHERE version_id = {int(version.pk)}")
        (total,) = cursor.fetchone()
        ids, vectors = np.zeros(total, np.int64), np.zeros((total, dim), np.float32)
        sql = (f"COPY (SELECT image_id::int8, vector::vector({dim}) FROM ranking_embedding "
               f"WHERE version_id = {int(version.pk)} ORDER BY image_id) TO STDOUT (FORMAT binary)")
        with cursor.copy(sql) as copy:
            for data in copy:
                pending += data
                if header:
                    if len(pending) < header:
                        continue
                    del pending[:header]
                    header = 0
                rows = min(len(pending) // row.itemsize, total - done)
                if rows:
                    parsed = np.frombuffer(bytes(pending[:rows * row.itemsize]), dtype=row)
                    ids[done:done + rows] = parsed["id"]
                    vectors[done:done + rows] = parsed["vector"]
                    del pending[:rows * row.itemsize]
                    done += rows
    if done != total:
        raise RuntimeError(f"read {done:,} embeddings of version {version.pk} of the {total:,} counted")
    return ids, vectors


def _store(embedding_map: EmbeddingMap, image_ids: np.ndarray, vectors: np.ndarray, layout) -> int:
    """Write the clusters (numbered by size) and the points in one transaction; returns the cluster count."""
    sizes = np.bincount(layout.clusters, minlength=len(layout.centroids))
    order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
    rng = np.random.default_rng(embedding_map.pk)
    sample_rank = rng.permutation(len(image_ids))
    with transaction.atomic():
        MapCluster.objects.filter(map=embedding_map).delete()  # a rerun starts over (points go with them)
        cluster_ids = {}
        for number, c in enumerate(order, start=1):
            members = np.flatnonzero(layout.clusters == c)
            closeness = vectors[members] @ layout.centroids[c]
            nearest = members[np.argsort(-closeness)[:REPRESENTATIVES]]
            cluster = MapCluster.objects.create(
                map=embedding_map, number=number, size=int(sizes[c]),
                x=float(np.median(layout.xy[members, 0])), y=float(np.median(layout.xy[members, 1])),
                representative_ids=image_ids[nearest].tolist())
            cluster_ids[int(c)] = cluster.pk
        cluster_of = np.vectorize(cluster_ids.get, otypes=[np.int64])(layout.clusters)
        with connection.cursor() as cursor:
            # COPY: a million rows in seconds, where INSERTs take minutes
            with cursor.copy("COPY ranking_mappoint (map_id, image_id, x, y, cluster_id, sample_rank) FROM STDIN") as copy:
                for i in range(len(image_ids)):
                    copy.write_row((embedding_map.pk, int(image_ids[i]), float(layout.xy[i, 0]),
                                    float(layout.xy[i, 1]), int(cluster_of[i]), int(sample_rank[i])))
            cursor.execute("SELECT p.cluster_id, i.label, count(*) FROM ranking_mappoint p "
                           "JOIN imagesearch_image i ON i.id = p.image_id WHERE p.map_id = %s AND i.label <> '' "
                           "GROUP BY p.cluster_id, i.label", [embedding_map.pk])
            labels: dict[int, Counter] = {}
            for cluster_id, label, count in cursor.fetchall():
                labels.setdefault(cluster_id, Counter())[label] = count
        for cluster_id, counts in labels.items():
            MapCluster.objects.filter(pk=cluster_id).update(top_labels=[list(t) for t in counts.most_common(3)])
    return len(order)


@dataclass
class SelectionOutcome:
    count: int
    image_ids: list[int]  # the first PREVIEW of them
    message: str
    url: str  # where to see what the action made ("" for a count)


PREVIEW = 60


def map_selection_apply(*, embedding_map: EmbeddingMap, polygon: list[tuple[float, float]], action: str,
                        name: str = "", user=None) -> SelectionOutcome:
    """What a box or lasso on the map becomes: nothing ("count"), a collection, a label, or a labeling focus.
    It takes every image of the map inside the polygon, not only the points the page drew."""
    from django.urls import reverse
    from django.utils.http import urlencode

    from imagesearch.services.library import images_label, images_move
    from labeling.models import LabelingFocus
    from labeling.services.focus import focus_create
    from ranking.selectors import map_selection

    ids = map_selection(embedding_map=embedding_map, polygon=polygon)
    preview = ids[:PREVIEW]
    labels = _labels_of(ids)
    if action == "count":
        named = ", ".join(f"{label or '(no label)'} {n:,}" for label, n in labels[:5])
        more = f" and {len(labels) - 5} more labels" if len(labels) > 5 else ""
        return SelectionOutcome(len(ids), preview, f"{len(ids):,} images inside the selection"
                                + (f": {named}{more}." if any(label for label, _ in labels) else "."), "")
    if not ids:
        raise AppError("No image is inside the selection.")
    if action == "collection":
        collection, moved = images_move(image_ids=ids, collection_name=name)
        return SelectionOutcome(len(ids), preview, f"Moved {moved:,} images into the collection “{collection.name}”.",
                                f"{reverse('image-list')}?{urlencode({'collection': collection.pk})}")
    if action == "label":
        if not name.strip():
            raise AppError("Give the label.", field="name")
        changed = images_label(image_ids=ids, label=name)
        replaced = ", ".join(f"{label} on {n:,}" for label, n in labels if label and label != name.strip())
        return SelectionOutcome(len(ids), preview, f"Labelled {changed:,} images “{name.strip()}”"
                                + (f"; it replaced {replaced}." if replaced else "."),
                                f"{reverse('image-list')}?{urlencode({'label': name.strip()})}")
    if action == "focus":
        version = embedding_map.version
        focus = focus_create(criterion=version.criterion, name=name, kind=LabelingFocus.Kind.SELECTION, image_ids=ids,
                             created_by=user,
                             description=f"{len(ids):,} images selected on the map of version {version.pk}.")
        return SelectionOutcome(len(ids), preview, f"Labelers can now choose the focus “{focus.name}” "
                                f"({len(ids):,} images).",
                                f"{reverse('label')}?{urlencode({'criterion': version.criterion_id, 'focus': focus.pk})}")
    raise AppError("A selection becomes a collection, a label or a focus.", field="action")


def _labels_of(image_ids: list[int]) -> list[tuple[str, int]]:
    """The labels of the images and how many carry each, commonest first ("" for none)."""
    from django.db.models import Count

    from imagesearch.models import Image

    rows = Image.objects.filter(pk__in=image_ids).values("label").annotate(n=Count("pk")).order_by("-n", "label")
    return [(row["label"], row["n"]) for row in rows]
