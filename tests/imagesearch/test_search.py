"""Search by example: the page, the API, uploaded queries and result feedback, on the real database."""

from __future__ import annotations

import numpy as np
import pytest

from imagesearch.models import Image
from labeling.models import SearchFeedback, Triplet, TripletJudgment
from labeling.selectors import training_triplets
from labeling.services.feedback import search_feedback_mark
from ranking.query_encoder import embed_file
from ranking.selectors import embedding_vectors
from tests import images
from tests.factories import UserFactory, make_image

pytestmark = pytest.mark.django_db


def _exact(vectors: dict[int, np.ndarray], query: np.ndarray, exclude: int | None = None) -> list[int]:
    """Library ids by cosine distance to the query, computed here without the index."""
    def distance(v):
        return 1 - float(np.dot(query, v)) / float(np.linalg.norm(query) * np.linalg.norm(v))
    return [i for _, i in sorted((distance(v), i) for i, v in vectors.items() if i != exclude)]


@pytest.fixture
def analyst(client):
    user = UserFactory(username="ana", roles=["analyst"])
    client.force_login(user)
    return user


@pytest.fixture
def vectors(autoencoder):
    return embedding_vectors(version=autoencoder, image_ids=list(Image.objects.values_list("pk", flat=True)))


def test_api_search_by_library_image_returns_the_exact_neighbours_with_links(client, analyst, autoencoder, vectors):
    query = min(vectors)
    answer = client.post("/api/search/", {"image_id": query, "k": 5}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["query"] == {"image_id": query, "token": None, "name": ""}
    assert body["version"]["id"] == autoencoder.pk
    assert [r["image_id"] for r in body["results"]] == _exact(vectors, vectors[query], exclude=query)[:5]
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1.0001 for s in scores)
    first = body["results"][0]
    assert first["thumbnail_url"].startswith("/media/") and first["image_url"] == f"/images/{first['image_id']}/"
    assert abs(first["score"] + first["distance"] - 1) < 1e-6


def test_pages_of_results_follow_each_other_and_filters_apply(client, analyst, autoencoder, vectors, stripes_library):
    query = stripes_library["v"][0]
    exact = _exact(vectors, vectors[query], exclude=query)
    pages = [client.post("/api/search", {"image_id": query, "k": 4, "offset": offset}).json()
             for offset in (0, 4, 8)]
    assert [r["image_id"] for p in pages for r in p["results"]] == exact[:12]
    assert [r["rank"] for r in pages[1]["results"]] == [5, 6, 7, 8]
    assert pages[0]["has_more"] is True
    last = client.post("/api/search", {"image_id": query, "k": 10, "offset": 10}).json()
    assert len(last["results"]) == 5 and last["has_more"] is False  # 15 others in all

    horizontal = client.post("/api/search/", {"image_id": query, "k": 20, "label": "h"}).json()["results"]
    assert [r["image_id"] for r in horizontal] == [i for i in exact if i in stripes_library["h"]]


def test_an_uploaded_query_is_searched_but_not_kept_in_the_library(client, analyst, autoencoder, vectors, tmp_path):
    data = images.stripes(True, seed=4242)
    before = Image.objects.count()
    answer = client.post("/api/search/", {"image": _file(data, "mine.png"), "k": 3})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["query"]["image_id"] is None and len(body["query"]["token"]) == 64
    assert Image.objects.count() == before
    path = tmp_path / "q.png"
    path.write_bytes(data)
    expected = _exact(vectors, embed_file(version=autoencoder, path=path))[:3]
    assert [r["image_id"] for r in body["results"]] == expected

    again = client.post("/api/search/", {"query_token": body["query"]["token"], "k": 3}).json()
    assert [r["image_id"] for r in again["results"]] == expected

    added = client.post("/api/search/", {"query_token": body["query"]["token"], "k": 3, "add_to_library": True,
                                         "add_to_collection": "Queries"}).json()
    assert Image.objects.count() == before + 1
    image = Image.objects.get(pk=added["query"]["image_id"])
    assert image.collection.name == "Queries" and image.original_name == "mine.png"


def test_uploading_a_library_image_searches_with_that_image(client, analyst, autoencoder, stripes_library):
    query = Image.objects.get(pk=stripes_library["h"][1])
    body = client.post("/api/search/", {"image": _file(query.file.read(), "again.png"), "k": 15}).json()
    assert body["query"]["image_id"] == query.pk
    assert query.pk not in [r["image_id"] for r in body["results"]]


@pytest.mark.parametrize("data, message", [
    (b"%PDF-1.4 not an image", "not a supported image"),
    (b"", "empty file"),
    (images.jpeg(width=400, height=300)[:900], "truncated or corrupt"),
    (images.multipage_tiff(pages=2), "a query is one picture"),
])
def test_bad_query_images_are_refused_with_the_reason(client, analyst, autoencoder, data, message):
    answer = client.post("/api/search/", {"image": _file(data, "bad.bin")})
    assert answer.status_code == 400
    assert message in answer.json()["detail"]


def test_query_size_and_pixel_limits(client, analyst, autoencoder, settings):
    settings.SEARCH_QUERY_MAX_PIXELS = 100 * 100
    answer = client.post("/api/search/", {"image": _file(images.png(width=200, height=150), "big.png")})
    assert answer.status_code == 400 and "SEARCH_QUERY_MAX_PIXELS" in answer.json()["detail"]
    settings.SEARCH_QUERY_MAX_BYTES = 100
    answer = client.post("/api/search/", {"image": _file(images.png(), "big.png")})
    assert answer.status_code == 400 and "SEARCH_QUERY_MAX_BYTES" in answer.json()["detail"]


def test_search_with_a_named_version_and_refusals(client, analyst, autoencoder, stripes_library):
    query = stripes_library["v"][0]
    assert client.post("/api/search/", {"image_id": query, "version": autoencoder.pk}).status_code == 200
    refused = client.post("/api/search/", {"image_id": query, "version": autoencoder.pk + 100})
    assert refused.status_code == 400 and "cannot be searched" in refused.json()["detail"]
    assert client.post("/api/search/", {"k": 3}).status_code == 400  # no query
    assert client.post("/api/search/", {"image_id": 10**9}).status_code == 404


def test_search_needs_a_model(client, analyst, stripes_library):
    answer = client.post("/api/search/", {"image_id": stripes_library["v"][0]})
    assert answer.status_code == 400 and "no active model" in answer.json()["detail"]


def test_only_analysts_and_admins_may_search(client, autoencoder, stripes_library):
    body = {"image_id": stripes_library["v"][0]}
    assert client.post("/api/search/", body).status_code in (401, 403)
    assert client.get("/search/").status_code == 302  # to the login page
    client.force_login(UserFactory(roles=["labeler"]))
    assert client.post("/api/search/", body).status_code == 403
    assert client.post("/api/search/feedback/", {"query": 1, "result": 2, "mark": "relevant"}).status_code == 403
    assert client.get(f"/search/?image={body['image_id']}").status_code == 403
    client.force_login(UserFactory(roles=["admin"]))
    assert client.post("/api/search/", body).status_code == 200


def test_feedback_pairs_become_judged_triplets_that_training_uses(analyst, criterion, autoencoder, stripes_library):
    query, good, other_good = stripes_library["v"][:3]
    bad, other_bad = stripes_library["h"][:2]
    mark = lambda result, relevant: search_feedback_mark(  # noqa: E731
        user=analyst, criterion=criterion, query_id=query, result_id=result, relevant=relevant)
    assert mark(good, True).judgments == 0  # one mark alone is no comparison
    outcome = mark(bad, False)
    assert (outcome.relevant, outcome.not_relevant, outcome.judgments) == ([good], [bad], 1)
    mark(other_good, True)
    outcome = mark(other_bad, False)
    assert outcome.judgments == 4
    judgments = TripletJudgment.objects.filter(user=analyst)
    assert judgments.count() == 4 and set(judgments.values_list("source", flat=True)) == {"search"}
    expected = {(query, g, b) for g in (good, other_good) for b in (bad, other_bad)}
    assert set(training_triplets(criterion=criterion)) == expected

    assert mark(other_bad, False).added == 0  # the same mark again adds nothing
    assert TripletJudgment.objects.filter(user=analyst).count() == 4

    outcome = mark(other_good, False)  # changed its mind: the pairs it made go, new ones come
    assert (outcome.relevant, outcome.not_relevant) == ([good], sorted([bad, other_bad, other_good]))
    assert set(training_triplets(criterion=criterion)) == {(query, good, b) for b in (bad, other_bad, other_good)}
    mark(good, None)  # cleared: nothing left to compare
    assert not TripletJudgment.objects.filter(user=analyst).exists()
    assert SearchFeedback.objects.filter(user=analyst).count() == 3
    # the triplets feedback made and nothing else uses are gone, not left for the labelers' queue
    assert not Triplet.objects.filter(origin__strategy="search_feedback").exists()


def test_feedback_of_users_with_large_ids(criterion, autoencoder, stripes_library):
    user = UserFactory(id=5_000_000, roles=["analyst"])
    query, good = stripes_library["v"][:2]
    search_feedback_mark(user=user, criterion=criterion, query_id=query, result_id=good, relevant=True)
    outcome = search_feedback_mark(user=user, criterion=criterion, query_id=query,
                                   result_id=stripes_library["h"][0], relevant=False)
    assert outcome.judgments == 1


def test_paging_stops_at_the_deepest_rank(client, analyst, autoencoder, stripes_library, monkeypatch):
    from imagesearch import selectors

    monkeypatch.setattr(selectors, "MAX_SEARCH_RESULTS", 8)
    first = client.post("/api/search/", {"image_id": stripes_library["v"][0], "k": 4}).json()
    last = client.post("/api/search/", {"image_id": stripes_library["v"][0], "k": 4, "offset": 4}).json()
    assert first["has_more"] is True and last["has_more"] is False and len(last["results"]) == 4


def test_an_expired_upload_is_reported(client, analyst, autoencoder, settings):
    token = client.post("/api/search/", {"image": _file(images.stripes(True, seed=5), "q.png")}).json()["query"]["token"]
    for path in settings.SEARCH_QUERY_DIR.glob(f"{token}.*"):
        path.unlink()
    answer = client.post("/api/search/", {"query_token": token})
    assert answer.status_code == 400 and "upload it again" in answer.json()["detail"]
    assert client.get(f"/search/?q={token}").status_code == 404


def test_feedback_api_and_its_errors(client, analyst, criterion, autoencoder, stripes_library):
    query, good = stripes_library["v"][:2]
    bad = stripes_library["h"][0]
    url = "/api/search/feedback/"
    client.post(url, {"query": query, "result": good, "mark": "relevant"}, content_type="application/json")
    answer = client.post(url, {"query": query, "result": bad, "mark": "not_relevant"}, content_type="application/json")
    assert answer.status_code == 200 and answer.json()["judgments"] == 1
    judgment = TripletJudgment.objects.get(user=analyst)
    assert judgment.source == TripletJudgment.Source.SEARCH_FEEDBACK
    triplet = judgment.triplet
    assert triplet.query_id == query and triplet.complete
    assert {"a": triplet.candidate_a_id, "b": triplet.candidate_b_id}[judgment.answer] == good
    assert client.post(url, {"query": query, "result": query, "mark": "relevant"}).status_code == 400
    assert client.post(url, {"query": query, "result": 10**9, "mark": "relevant"}).status_code == 400
    assert client.post(url, {"query": query, "result": good, "mark": "maybe"}).status_code == 400


def test_search_page_shows_results_with_document_links_and_marks(client, analyst, criterion, autoencoder,
                                                                  stripes_library):
    from imagesearch.services.ingest import image_ingest_bytes
    from ranking.services.embeddings import embeddings_add_new_images

    collection = Image.objects.get(pk=stripes_library["v"][0]).collection
    scan = image_ingest_bytes(data=images.multipage_tiff(pages=2), original_name="scan.tif", collection=collection)
    embeddings_add_new_images(image_ids=scan.image_ids)
    query = stripes_library["v"][0]
    search_feedback_mark(user=analyst, criterion=criterion, query_id=query, result_id=stripes_library["v"][1],
                         relevant=True)
    page = client.get(f"/search/?image={query}")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="thumb result') == 17  # 16 + 2 pages − the query
    assert f'/documents/{scan.document_id}/?page=2#page-2' in html
    assert 'data-mark="relevant"' in html
    assert f'href="/search/?image={stripes_library["h"][0]}' in html  # "Similar" on every result
    # the scores are explained on the page itself, not only in a tooltip (touch screens have no hover)
    assert 'id="score-legend"' in html and "of random pairs of library images" in html


def test_search_page_upload_compare_and_more(client, analyst, criterion, autoencoder, stripes_library, settings):
    from ranking.services.training import training_start, version_train
    from tests.conftest import TINY_AUTOENCODER

    second = version_train(version_id=training_start(criterion=criterion, kind="autoencoder",
                                                     hyperparameters={**TINY_AUTOENCODER, "seed": 7},
                                                     dispatch=False).pk, embed="inline")
    settings.SEARCH_RESULTS_PER_PAGE = 6
    answer = client.post("/search/", {"image": _file(images.stripes(False, seed=77), "query.png")})
    assert answer.status_code == 302 and "?q=" in answer["Location"]
    page = client.get(answer["Location"])
    html = page.content.decode()
    assert page.status_code == 200 and html.count('class="thumb result') == 6
    assert "Add to library" in html and "More results" in html
    token = answer["Location"].split("q=")[1].split("&")[0]
    assert client.get(f"/search/queries/{token}.webp").status_code == 200

    more = client.get(f"/search/?q={token}&offset=6&fragment=1").content.decode()
    assert '<ol class="grid result-grid" start="7">' in more and more.count('class="thumb result') == 6

    compared = client.get(f"/search/?q={token}&version={autoencoder.pk}&compare={second.pk}")
    columns = compared.context["columns"]
    assert [c.version.pk for c in columns] == [autoencoder.pk, second.pk]
    both = {h.image.pk for h in columns[0].hits} & {h.image.pk for h in columns[1].hits}
    assert compared.context["in_both"] == both
    assert compared.content.decode().count("result in-both") == 2 * len(both)
    # a version of another criterion (say, after switching criterion) falls back to the active one
    other = client.get(f"/search/?q={token}&version=999999&compare=abc")
    assert other.status_code == 200 and [c.version.pk for c in other.context["columns"]] == [autoencoder.pk]

    north = Image.objects.filter(collection__name="North").first().collection_id
    added = client.post("/search/add/", {"q": token, "add_to_collection": "Mine", "collection": north})
    assert added.status_code == 302 and "image=" in added["Location"] and f"collection={north}" in added["Location"]
    assert Image.objects.filter(collection__name="Mine").count() == 1

    bad = client.post("/search/", {"image": _file(b"nope", "x.txt")}, follow=True)
    assert "not a supported image" in bad.content.decode()
    assert client.get("/search/?q=" + "0" * 64).status_code == 404


def _file(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def test_an_api_upload_gets_its_thumbnail_when_first_shown(client, analyst, autoencoder, settings):
    token = client.post("/api/search/", {"image": _file(images.jpeg(seed=77), "q.jpg")}).json()["query"]["token"]
    assert not (settings.SEARCH_QUERY_DIR / f"{token}.webp").exists()  # not made for the API
    answer = client.get(f"/search/queries/{token}.webp")
    assert answer.status_code == 200 and b"".join(answer.streaming_content)[:4] == b"RIFF"
    assert (settings.SEARCH_QUERY_DIR / f"{token}.webp").exists()
