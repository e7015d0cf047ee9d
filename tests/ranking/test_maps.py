"""Clusters and the map: the job that computes them, the points the page draws, and what a selection becomes."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from imagesearch.models import Image, Job
from labeling.models import LabelingFocus
from ranking.models import EmbeddingMap, MapCluster, MapPoint
from ranking.projection import map_layout, project
from ranking.selectors import map_clusters, points_in_polygon
from ranking.services.maps import map_compute, map_start, map_start_if_missing
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _computed(version) -> EmbeddingMap:
    embedding_map = map_start(version=version, dispatch=False)
    map_compute(map_id=embedding_map.pk)
    return EmbeddingMap.objects.select_related("job").get(pk=embedding_map.pk)


def _points(response) -> dict:
    """The points API's binary body, read as map.js reads it."""
    body = response.content
    (length,) = struct.unpack_from("<I", body)
    header = json.loads(body[4:4 + length])
    n, at = header["count"], 4 + length
    arrays = {}
    for name, dtype in (("ids", "<i4"), ("x", "<f4"), ("y", "<f4"), ("cluster", "<u2"), ("label", "<u2"),
                        ("collection", "<u2")):
        arrays[name] = np.frombuffer(body, dtype=dtype, count=n, offset=at)
        at += n * np.dtype(dtype).itemsize
    assert at == len(body)
    return {"header": header, **arrays}


def test_a_map_puts_every_embedded_image_in_one_cluster_and_on_the_plane(autoencoder, stripes_library):
    embedding_map = _computed(autoencoder)
    assert embedding_map.job.status == Job.Status.SUCCEEDED
    assert embedding_map.point_count == 16 and embedding_map.fitted_count == 16
    assert embedding_map.method == "pca"  # 16 points: t-SNE needs a hundred (ranking.projection.MIN_TSNE_POINTS)
    assert "Mapped 16 images" in embedding_map.job.message
    points = list(MapPoint.objects.filter(map=embedding_map).select_related("cluster"))
    assert sorted(p.image_id for p in points) == sorted(stripes_library["v"] + stripes_library["h"])
    assert all(0 <= p.x <= 1 and 0 <= p.y <= 1 for p in points)
    clusters = list(MapCluster.objects.filter(map=embedding_map))
    assert [c.number for c in clusters] == list(range(1, len(clusters) + 1))
    assert [c.size for c in clusters] == sorted((c.size for c in clusters), reverse=True)  # numbered by size
    assert sum(c.size for c in clusters) == 16
    for cluster in clusters:
        members = {p.image_id for p in points if p.cluster_id == cluster.pk}
        assert len(members) == cluster.size
        assert set(cluster.representative_ids) <= members
        # the labels counted are its own images' labels
        assert sum(n for _, n in cluster.top_labels) == cluster.size
    # the cluster list shows each cluster with its representatives' images
    rows = map_clusters(embedding_map=embedding_map)
    assert [r.cluster.pk for r in rows] == [c.pk for c in clusters]
    assert all(r.representatives for r in rows)


def test_copies_of_one_photo_fall_into_one_cluster(copied_library, criterion):
    """What the embedding puts together, the clusters keep together: no photo's copies are split."""
    from ranking.selectors import active_version

    embedding_map = _computed(active_version(criterion=criterion))
    cluster_of = dict(MapPoint.objects.filter(map=embedding_map).values_list("image_id", "cluster_id"))
    assert len(set(cluster_of.values())) >= 2
    for photo, ids in copied_library.items():
        assert len({cluster_of[i] for i in ids}) == 1, photo


def test_a_map_computed_again_starts_over_and_a_finished_one_is_left_alone(autoencoder):
    embedding_map = map_start(version=autoencoder, dispatch=False)
    map_compute(map_id=embedding_map.pk)
    # a redelivered task whose job was still running (its worker died before the end) computes it all again
    Job.objects.filter(pk=embedding_map.job_id).update(status=Job.Status.RUNNING, finished_at=None)
    map_compute(map_id=embedding_map.pk)
    assert MapPoint.objects.filter(map=embedding_map).count() == 16
    sizes = sum(MapCluster.objects.filter(map=embedding_map).values_list("size", flat=True))
    assert sizes == 16
    finished_at = Job.objects.get(pk=embedding_map.job_id).finished_at
    map_compute(map_id=embedding_map.pk)  # finished: nothing happens
    assert Job.objects.get(pk=embedding_map.job_id).finished_at == finished_at


def test_a_second_start_while_one_runs_returns_it_and_activation_maps_a_version_once(autoencoder, settings):
    first = map_start(version=autoencoder, dispatch=False)
    assert map_start(version=autoencoder, dispatch=False).pk == first.pk
    settings.MAP_AUTO = True
    assert map_start_if_missing(version=autoencoder) is None  # it has one under way
    Job.objects.filter(pk=first.job_id).update(status=Job.Status.FAILED)
    again = map_start_if_missing(version=autoencoder)  # a failed one does not count
    assert again is not None and again.pk != first.pk
    settings.MAP_AUTO = False
    Job.objects.filter(pk=again.job_id).update(status=Job.Status.FAILED)
    assert map_start_if_missing(version=autoencoder) is None


def test_the_points_api_sends_a_sample_or_the_points_in_a_box(autoencoder, stripes_library, client):
    embedding_map = _computed(autoencoder)
    client.force_login(UserFactory(roles=["analyst"]))
    url = f"/api/maps/{embedding_map.pk}/points/"
    everything = _points(client.get(url))
    assert everything["header"]["total"] == 16 and len(everything["ids"]) == 16
    stored = {p.image_id: p for p in MapPoint.objects.filter(map=embedding_map).select_related("cluster")}
    for i, image_id in enumerate(everything["ids"].tolist()):
        point = stored[image_id]
        assert everything["x"][i] == pytest.approx(point.x, abs=1e-6)
        assert everything["cluster"][i] == point.cluster.number
        label = everything["header"]["labels"][everything["label"][i]]
        assert label == Image.objects.get(pk=image_id).label
        assert everything["header"]["collections"][everything["collection"][i]] in {"North", "South"}
    sample = _points(client.get(url, {"limit": 5}))
    assert len(sample["ids"]) == 5 and set(sample["ids"]) <= set(everything["ids"])
    # the same first five each time: a uniform sample fixed by the map's random order
    assert _points(client.get(url, {"limit": 5}))["ids"].tolist() == sample["ids"].tolist()
    left = _points(client.get(url, {"x0": 0, "y0": 0, "x1": 0.5, "y1": 1}))
    assert left["ids"].tolist() and all(x <= 0.5 for x in left["x"])
    assert sorted(left["ids"].tolist()) == sorted(i for i, p in stored.items() if p.x <= 0.5)
    assert client.get(url, {"limit": "lots"}).status_code == 400
    client.force_login(UserFactory(roles=["labeler"]))
    assert client.get(url).status_code == 403


def test_a_lasso_selects_every_image_inside_and_becomes_a_focus_a_collection_or_a_label(autoencoder, client):
    embedding_map = _computed(autoencoder)
    url = f"/api/maps/{embedding_map.pk}/selection/"
    left_half = [[-0.01, -0.01], [0.5, -0.01], [0.5, 1.01], [-0.01, 1.01]]
    inside = set(MapPoint.objects.filter(map=embedding_map, x__lte=0.5).values_list("image_id", flat=True))
    analyst = UserFactory(roles=["analyst"])
    client.force_login(analyst)
    counted = client.post(url, {"polygon": left_half}, content_type="application/json").json()
    assert counted["count"] == len(inside) and {p["id"] for p in counted["preview"]} == inside
    assert all(p["thumbnail_url"] and p["title"] for p in counted["preview"])
    # an analyst looks; only admins change the library or what labelers work on
    refused = client.post(url, {"polygon": left_half, "action": "focus", "name": "Left"}, content_type="application/json")
    assert refused.status_code == 403
    client.force_login(UserFactory(roles=["admin"]))
    made = client.post(url, {"polygon": left_half, "action": "focus", "name": "Left half"},
                       content_type="application/json")
    assert made.status_code == 200, made.content
    focus = LabelingFocus.objects.get(name="Left half")
    assert focus.kind == LabelingFocus.Kind.SELECTION and focus.criterion_id == autoencoder.criterion_id
    assert set(focus.members.values_list("image_id", flat=True)) == inside
    assert made.json()["url"] == f"/label/?criterion={autoencoder.criterion_id}&focus={focus.pk}"
    taken = client.post(url, {"polygon": left_half, "action": "focus", "name": "Left half"},
                        content_type="application/json")
    assert taken.status_code == 400 and "already called" in taken.content.decode()
    assert "images inside the selection: " in counted["message"]  # and which labels they carry
    labelled = client.post(url, {"polygon": left_half, "action": "label", "name": "west"}, content_type="application/json")
    assert labelled.status_code == 200 and "it replaced" in labelled.json()["message"]  # their v and h labels
    assert set(Image.objects.filter(label="west").values_list("pk", flat=True)) == inside
    moved = client.post(url, {"polygon": left_half, "action": "collection", "name": "West"},
                        content_type="application/json")
    assert moved.status_code == 200 and "Moved" in moved.json()["message"]
    assert set(Image.objects.filter(collection__name="West").values_list("pk", flat=True)) == inside
    nowhere = [[5, 5], [6, 5], [6, 6]]
    assert client.post(url, {"polygon": nowhere}, content_type="application/json").status_code == 400  # off the map
    empty = [[0.999, 0.999], [1.0, 0.999], [1.0, 1.0]]
    assert client.post(url, {"polygon": empty, "action": "focus", "name": "x"},
                       content_type="application/json").status_code == 400


def test_points_in_a_concave_polygon():
    # a U shape: the notch between its arms is outside
    u_shape = np.array([(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)], float)
    points = np.array([(0.5, 2), (1.5, 2), (2.5, 2), (1.5, 0.5), (4, 1)], float)
    assert points_in_polygon(points, u_shape).tolist() == [True, False, True, True, False]


def test_a_projection_fitted_on_a_sample_places_the_rest_by_their_neighbours():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(0, 0.05, (150, 8)) + 1, rng.normal(0, 0.05, (150, 8)) - 1]).astype(np.float32)
    xy, fitted, method = project(blobs, fit_limit=120)
    assert fitted == 120 and method == "tsne" and xy.shape == (300, 2)
    assert xy.min() >= 0 and xy.max() <= 1
    first, second = xy[:150].mean(0), xy[150:].mean(0)
    # each blob's points, fitted or placed, lie nearer their own blob's centre than the other's
    for block, own, other in ((xy[:150], first, second), (xy[150:], second, first)):
        assert (np.linalg.norm(block - own, axis=1) < np.linalg.norm(block - other, axis=1)).mean() > 0.95
    layout = map_layout(blobs, clusters=2, method="pca")
    assert len(set(layout.clusters[:150])) == 1 and len(set(layout.clusters[150:])) == 1
    assert layout.clusters[0] != layout.clusters[-1]


def test_the_vectors_are_read_as_stored(autoencoder):
    from ranking.selectors import embedding_vectors
    from ranking.services.maps import _version_vectors

    ids, vectors = _version_vectors(autoencoder)
    stored = embedding_vectors(version=autoencoder, image_ids=ids.tolist())
    assert ids.tolist() == sorted(stored) and len(ids) == 16
    assert np.allclose(vectors, np.stack([stored[i] for i in ids.tolist()]))


def test_a_map_that_cannot_be_queued_says_so_and_a_later_activation_tries_again(autoencoder, monkeypatch, settings,
                                                                                django_capture_on_commit_callbacks):
    from ranking import tasks

    def no_broker(*args, **kwargs):
        raise ConnectionError("Error 2 connecting to redis.sock")

    monkeypatch.setattr(tasks.compute_map, "delay", no_broker)
    with django_capture_on_commit_callbacks(execute=True):
        embedding_map = map_start(version=autoencoder)
    job = Job.objects.get(pk=embedding_map.job_id)
    assert job.status == Job.Status.FAILED and "could not be queued" in job.error
    settings.MAP_AUTO = True
    sent = []
    monkeypatch.setattr(tasks.compute_map, "delay", lambda map_id: sent.append(map_id))
    with django_capture_on_commit_callbacks(execute=True):
        again = map_start_if_missing(version=autoencoder)
    assert sent == [again.pk] and again.pk != embedding_map.pk


def test_the_map_page_says_how_many_images_came_after_the_map(autoencoder, client):
    from imagesearch.services.ingest import image_ingest_bytes
    from ranking.services.embeddings import embeddings_add_new_images
    from tests import images

    embedding_map = _computed(autoencoder)
    client.force_login(UserFactory(roles=["admin"]))
    assert "not on it" not in client.get("/map/").content.decode()
    late = image_ingest_bytes(data=images.stripes(True, seed=777), original_name="late.png",
                              collection=Image.objects.first().collection).image_ids
    embeddings_add_new_images(image_ids=late)
    page = client.get("/map/").content.decode()
    assert "1 image embedded since this map was computed is not on it" in page and "Compute the map again" in page
    assert client.post("/map/compute/", {"version": autoencoder.pk}).status_code == 302
    assert EmbeddingMap.objects.filter(version=autoencoder).exclude(pk=embedding_map.pk).exists()
