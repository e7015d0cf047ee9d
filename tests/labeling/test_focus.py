"""Labeling focuses: triplets drawn within what an admin chose, a queue per focus, and its figures."""

from __future__ import annotations

import pytest

from imagesearch.models import Collection
from labeling.models import LabelingFocus, Triplet
from labeling.selectors import focus_images, focus_rows, focuses_offered, triplets_waiting
from labeling.services.focus import focus_archive, focus_create, focus_make
from labeling.services.judgments import assignments_next, judgment_submit
from labeling.services.triplets import triplets_refill
from ranking.selectors import nearest_images
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _ids(triplet: Triplet) -> set[int]:
    return {triplet.query_id, triplet.candidate_a_id, triplet.candidate_b_id}


def test_a_collection_focus_gives_triplets_of_that_collection_only(autoencoder, criterion, settings):
    settings.LABELING_GOLD_RATE = 0
    north = Collection.objects.get(name="North")
    focus = focus_create(criterion=criterion, name="North only", kind="collection", collection=north)
    north_ids = set(north.images.values_list("pk", flat=True))
    labeler = UserFactory(roles=["labeler"])
    served = []
    for _ in range(6):
        (triplet,) = assignments_next(user=labeler, criterion=criterion, focus=focus)
        served.append(triplet)
        judgment_submit(user=labeler, triplet_id=triplet.pk, answer="a")
    assert all(_ids(t) <= north_ids for t in served)
    # the whole library's queue still holds triplets across both collections
    triplets_refill(criterion=criterion, target=20)
    assert any(not _ids(t) <= north_ids for t in triplets_waiting(criterion=criterion))
    # and the focus's queue only its own
    assert all(_ids(t) <= north_ids for t in triplets_waiting(criterion=criterion, focus=focus))


def test_a_listed_focus_keeps_the_nearest_images_and_the_triplets_within_its_images(autoencoder, criterion,
                                                                                   stripes_library, settings):
    settings.LABELING_GOLD_RATE = 0
    chosen = stripes_library["v"][:4] + stripes_library["h"][:3]
    focus = focus_create(criterion=criterion, name="Seven", kind="selection", image_ids=chosen)
    assert set(focus_images(focus).values_list("pk", flat=True)) == set(chosen)
    hits = nearest_images(version=autoencoder, image_id=chosen[0], k=10, focus_id=focus.pk)
    assert {h.image.pk for h in hits} == set(chosen) - {chosen[0]}
    labeler = UserFactory(roles=["labeler"])
    for _ in range(5):
        (triplet,) = assignments_next(user=labeler, criterion=criterion, focus=focus)
        assert _ids(triplet) <= set(chosen)
        judgment_submit(user=labeler, triplet_id=triplet.pk, answer="b")


def test_a_focus_is_refused_without_a_name_or_images_and_names_are_unique(criterion, stripes_library):
    with pytest.raises(ValueError, match="Name the focus"):
        focus_create(criterion=criterion, name=" ", kind="label", label="v")
    with pytest.raises(ValueError, match="at least 3 images"):
        focus_create(criterion=criterion, name="Two", kind="selection", image_ids=stripes_library["v"][:2])
    with pytest.raises(ValueError, match="Give the label"):
        focus_create(criterion=criterion, name="No label", kind="label")
    with pytest.raises(ValueError, match="0 images have the label “vv”.*Labels in the library: h, v"):
        focus_create(criterion=criterion, name="Typo", kind="label", label="vv")
    empty = Collection.objects.create(name="Empty")
    with pytest.raises(ValueError, match="fewer than 3 images"):
        focus_create(criterion=criterion, name="Nothing yet", kind="collection", collection=empty)
    focus_create(criterion=criterion, name="Vertical", kind="label", label="v")
    with pytest.raises(ValueError, match="already called"):
        focus_create(criterion=criterion, name="Vertical", kind="label", label="h")
    with pytest.raises(ValueError, match="no such cluster"):
        focus_make(criterion=criterion, kind="cluster", cluster=999_999)


def test_labelers_see_the_focuses_offered_and_the_page_says_which_one_they_are_in(criterion, stripes_library, client):
    vertical = focus_create(criterion=criterion, name="Vertical stripes", kind="label", label="v")
    hidden = focus_create(criterion=criterion, name="Old one", kind="label", label="h")
    focus_archive(focus=hidden)
    assert [(f.name, f.image_count) for f in focuses_offered(criterion=criterion)] == [("Vertical stripes", 8)]
    client.force_login(UserFactory(roles=["labeler"]))
    page = client.get("/label/").content.decode()
    assert "Vertical stripes (8)" in page and "Old one" not in page and "Triplets from the whole library" in page
    page = client.get("/label/", {"focus": vertical.pk}).content.decode()
    assert "Focus: <strong>Vertical stripes</strong>" in page and f'data-focus="{vertical.pk}"' in page
    assert client.get("/label/", {"focus": hidden.pk}).status_code == 400
    # the API: the offered focuses, and the next triplets of one
    assert [f["name"] for f in client.get("/api/labeling/focuses/").json()] == ["Vertical stripes"]
    answer = client.post("/api/labeling/next/", {"focus": vertical.pk, "count": 2}, content_type="application/json")
    assert answer.status_code == 200
    assert all(t["query"]["id"] in stripes_library["v"] for t in answer.json()["triplets"])
    refused = client.post("/api/labeling/next/", {"focus": hidden.pk}, content_type="application/json")
    assert refused.status_code == 400 and "not offered" in refused.json()["focus"][0]


def test_only_labeling_admins_make_focuses_through_the_api(criterion, stripes_library, client):
    client.force_login(UserFactory(roles=["labeler"]))
    body = {"kind": "label", "label": "h", "name": "Horizontal"}
    assert client.post("/api/labeling/focuses/", body, content_type="application/json").status_code == 403
    client.force_login(UserFactory(roles=["admin"]))
    made = client.post("/api/labeling/focuses/", body, content_type="application/json")
    assert made.status_code == 201 and made.json()["image_count"] == 8
    focus = LabelingFocus.objects.get(name="Horizontal")
    archived = client.patch(f"/api/labeling/focuses/{focus.pk}/", {"archived": True}, content_type="application/json")
    assert archived.status_code == 200 and archived.json()["archived"] is True
    selection = {"kind": "selection", "name": "Some", "images": stripes_library["v"][:5]}
    assert client.post("/api/labeling/focuses/", selection, content_type="application/json").status_code == 201
    bad = client.post("/api/labeling/focuses/", {"kind": "collection", "name": "C", "collection": 999_999},
                      content_type="application/json")
    assert bad.status_code == 400 and "no such collection" in bad.content.decode()


def test_a_saved_search_focus_holds_the_image_and_its_nearest(autoencoder, criterion, stripes_library):
    query = stripes_library["v"][0]
    focus = focus_make(criterion=criterion, kind="search", image=query, count=5)
    members = set(focus.members.values_list("image_id", flat=True))
    nearest = {h.image.pk for h in nearest_images(version=autoencoder, image_id=query, k=5)}
    assert members == {query} | nearest
    assert focus.kind == "search" and "nearest" in focus.description


def test_the_dashboard_shows_judgments_and_held_out_accuracy_per_focus(autoencoder, criterion, stripes_library,
                                                                      monkeypatch, client):
    from ranking.selectors import triplet_accuracy_of_version
    from ranking.services import evaluation
    from tests.factories import make_judgment, make_triplet

    v, h = stripes_library["v"], stripes_library["h"]
    focus = focus_create(criterion=criterion, name="Vertical", kind="label", label="v")
    inside = [make_triplet(criterion=criterion, query=v[i], candidates=(v[i + 1], v[i + 2])) for i in range(5)]
    outside = [make_triplet(criterion=criterion, query=h[i], candidates=(h[i + 1], v[i])) for i in range(5)]
    for triplet in inside + outside:
        make_judgment(triplet=triplet, closer=triplet.candidate_a_id)
    held = {v[0], v[1], h[0]}  # the queries held out of training
    monkeypatch.setattr(evaluation, "_held_out", lambda query_id, fraction, seed: query_id in held)
    (row,) = focus_rows(criterion=criterion)
    assert row.focus == focus and row.images == 8
    assert row.judged_triplets == 5  # only those with all three images in the focus
    assert row.held_out_triplets == 2
    expected = triplet_accuracy_of_version(version=autoencoder, triplets=[
        (t.query_id, t.candidate_a_id, t.candidate_b_id) for t in inside[:2]])
    assert row.accuracy == {autoencoder.pk: expected}
    client.force_login(UserFactory(roles=["admin"]))
    page = client.get("/dashboard/").content.decode()
    assert "Labeling focuses" in page and "Vertical" in page


def test_a_second_click_on_focus_labeling_on_a_cluster_opens_the_focus_made_by_the_first(autoencoder, criterion,
                                                                                        client):
    from ranking.models import MapCluster
    from ranking.services.maps import map_compute, map_start

    embedding_map = map_start(version=autoencoder, dispatch=False)
    map_compute(map_id=embedding_map.pk)
    cluster = MapCluster.objects.filter(map=embedding_map).first()
    client.force_login(UserFactory(roles=["admin"]))
    form = {"criterion": criterion.pk, "kind": "cluster", "cluster": cluster.pk}
    first = client.post("/label/focuses/", form)
    focus = LabelingFocus.objects.get(kind="cluster")
    assert first["Location"] == f"/label/?criterion={criterion.pk}&focus={focus.pk}"
    assert focus.members.count() == cluster.size and focus.name == f"Cluster {cluster.number} of version {autoencoder.pk}"
    second = client.post("/label/focuses/", form, follow=True)
    assert second.redirect_chain[-1][0] == first["Location"] and "exists already" in second.content.decode()
    assert LabelingFocus.objects.count() == 1
