"""The labeling API as a labeler's browser or script uses it, and what each role may reach."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import TripletJudgment
from labeling.services.judgments import NOT_ASSIGNED
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _client(*roles):
    api = APIClient()
    user = UserFactory(roles=list(roles))
    api.force_login(user)  # a session, as the labeling page has
    return api, user


@pytest.fixture
def labeler(stripes_library, settings):
    settings.LABELING_GOLD_RATE = 0
    return _client("labeler")


def test_next_answer_skip_undo_and_stats(labeler, criterion):
    api, user = labeler
    response = api.post("/api/labeling/next/", {"criterion": criterion.pk, "count": 3}, format="json")
    assert response.status_code == 200
    triplets = response.json()["triplets"]
    assert len(triplets) == 3 and len({t["id"] for t in triplets}) == 3
    first = triplets[0]
    assert first["question"] == criterion.question
    assert first["query"]["file_url"].startswith("/media/") and "label" not in first["query"]
    assert api.get(first["a"]["thumbnail_url"]).status_code == 200  # labelers can load the pictures

    answered = api.post("/api/labeling/judgments/", {"triplet": first["id"], "answer": "a", "seconds": 1.2},
                        format="json")
    assert answered.status_code == 201 and answered.json()["answer"] == "a"
    again = api.post("/api/labeling/judgments/", {"triplet": first["id"], "answer": "b"}, format="json")
    assert again.status_code == 400 and again.json()["triplet"] == [NOT_ASSIGNED]
    assert api.post("/api/labeling/judgments/", {"triplet": triplets[1]["id"], "answer": "left"},
                    format="json").status_code == 400
    assert api.post("/api/labeling/skip/", {"triplet": triplets[1]["id"]}, format="json").status_code == 204
    api.post("/api/labeling/judgments/", {"triplet": triplets[2]["id"], "answer": "unsure", "seconds": 2.8},
             format="json")

    stats = api.get("/api/labeling/stats/", {"criterion": criterion.pk}).json()
    assert stats["today"] == stats["total"] == 2 and stats["answers_per_minute"] == pytest.approx(60 * 2 / 4.0)

    undone = api.post("/api/labeling/undo/", {"criterion": criterion.pk}, format="json")
    assert undone.status_code == 200 and undone.json()["id"] == triplets[2]["id"]
    assert list(TripletJudgment.objects.filter(user=user).values_list("triplet_id", "answer")) == [(first["id"], "a")]
    assert api.get("/api/labeling/stats/").json()["total"] == 1


def test_a_refusal_is_a_400_with_its_reason_and_a_bug_is_a_logged_500(labeler, criterion, monkeypatch, caplog):
    from labeling.services import judgments

    api, user = labeler
    given = api.post("/api/labeling/next/", {"criterion": criterion.pk, "count": 1}, format="json")
    triplet = given.json()["triplets"][0]
    undo = api.post("/api/labeling/undo/", {"criterion": criterion.pk}, format="json")
    assert undo.status_code == 400 and undo.json() == {"detail": judgments.NOTHING_TO_UNDO}

    def broken(**kwargs):
        raise ValueError("a bug, not the labeler's mistake")

    monkeypatch.setattr(judgments, "judgment_submit", broken)
    api.raise_request_exception = False
    with caplog.at_level("ERROR", logger="django.request"):
        response = api.post("/api/labeling/judgments/", {"triplet": triplet["id"], "answer": "a"}, format="json")
    assert response.status_code == 500
    assert any("a bug, not the labeler" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_labelers_cannot_reach_admin_endpoints_or_pages(labeler, criterion):
    api, user = labeler
    for url in ("/api/labeling/quality/", "/api/labeling/export/", "/api/images/"):
        assert api.get(url).status_code == 403, url
    assert api.post("/api/labeling/gold/", {"triplet": 1}, format="json").status_code == 403
    assert api.post("/api/labeling/import/", {}).status_code == 403
    assert api.post("/api/images/upload/", {}).status_code == 403
    assert api.get("/admin/").status_code == 302  # to the admin login: not staff
    assert api.get("/admin/labeling/triplet/").status_code == 302
    assert api.get("/images/").status_code == 403
    assert api.get("/label/").status_code == 200


def test_analysts_do_not_label(stripes_library, criterion):
    api, _ = _client("analyst")
    assert api.post("/api/labeling/next/", {}, format="json").status_code == 403
    assert api.get("/api/images/").status_code == 200


def test_a_labeler_only_labels_criteria_open_to_them(labeler, criterion):
    from ranking.services.criteria import criterion_create

    api, _ = labeler
    private = criterion_create(name="Structure")
    private.labelers.add(UserFactory())
    names = [c["name"] for c in api.get("/api/labeling/criteria/").json()]
    assert names == [criterion.name]
    assert api.post("/api/labeling/next/", {"criterion": private.pk}, format="json").status_code == 403


def test_admins_make_gold_see_quality_and_export(labeler, criterion):
    api, labeler_user = labeler
    (triplet,) = api.post("/api/labeling/next/", {}, format="json").json()["triplets"]
    api.post("/api/labeling/judgments/", {"triplet": triplet["id"], "answer": "b"}, format="json")
    admin, _ = _client("admin")
    made = admin.post("/api/labeling/gold/", {"triplet": triplet["id"]}, format="json")
    assert made.status_code == 200 and made.json()["gold_answer"] == "b"
    quality = admin.get("/api/labeling/quality/").json()
    # the answer the gold was made from does not score its own labeler
    assert [(q["username"], q["gold_answered"], q["gold_accuracy"]) for q in quality] == [
        (labeler_user.username, 0, None)]
    exported = admin.get("/api/labeling/export/", {"type": "jsonl"})
    assert exported.status_code == 200
    assert b"".join(exported.streaming_content).decode().count("\n") == 1


def test_anonymous_users_see_only_the_login_page(client, stripes_library):
    for url in ("/", "/label/", "/images/", "/admin/labeling/triplet/"):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"], url
    for url in ("/api/labeling/stats/", "/api/images/", "/api/schema/", "/api/docs/"):
        assert client.get(url).status_code in (401, 403), url
    assert client.get("/accounts/login/").status_code == 200


def test_home_sends_each_role_to_its_page(client, db):
    for roles, target in ((["labeler"], "/label/"), (["analyst"], "/images/"), (["admin"], "/images/")):
        client.force_login(UserFactory(roles=roles))
        assert client.get("/")["Location"] == target
    client.force_login(UserFactory())
    assert client.get("/").status_code == 403


def test_the_schema_describes_the_labeling_api(db):
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    for path in ("/api/labeling/next/", "/api/labeling/judgments/", "/api/labeling/undo/", "/api/labeling/stats/"):
        assert path in paths


def test_files_need_a_role_and_downloads_are_for_analysts(client, stripes_library):
    from imagesearch.models import Image

    image = Image.objects.first()
    url = f"/media/{image.file.name}"
    client.force_login(UserFactory())
    assert client.get(url).status_code == 403
    client.force_login(UserFactory(roles=["labeler"]))
    assert client.get(url).status_code == 200
    assert client.get(url, {"download": 1}).status_code == 403  # the original name could give the answer away
    client.force_login(UserFactory(roles=["analyst"]))
    assert client.get(url, {"download": 1}).status_code == 200
    client.force_login(UserFactory())
    assert client.get("/api/schema/").status_code == 403


def test_a_labeler_taken_off_a_criterion_cannot_answer_what_they_hold(labeler, criterion):
    api, user = labeler
    (triplet,) = api.post("/api/labeling/next/", {}, format="json").json()["triplets"]
    criterion.labelers.add(UserFactory(roles=["labeler"]))  # now open to someone else only
    response = api.post("/api/labeling/judgments/", {"triplet": triplet["id"], "answer": "a"}, format="json")
    assert response.status_code == 403 and not TripletJudgment.objects.exists()
