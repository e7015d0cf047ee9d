"""Near-duplicates: copies of one picture (resized, recompressed, cropped) grouped, other pictures not;
marks that override the distances and become judgments; the page and the API."""

from __future__ import annotations

import pytest

from imagesearch.models import Job
from labeling.models import TripletJudgment
from ranking.models import DuplicateMark
from ranking.selectors import duplicate_groups
from ranking.services.duplicates import (
    duplicate_mark, duplicate_scan_prepare, duplicate_scan_run_inline, duplicate_scan_start,
)
from tests.factories import UserFactory

def _scan(criterion, **options):
    scan = duplicate_scan_start(criterion=criterion, dispatch=False, **options)
    duplicate_scan_run_inline(scan=scan)
    scan.refresh_from_db()
    return scan


def _grouped(found) -> list[set[int]]:
    return [{g.reference.pk, *(m.image.pk for m in g.members)} for g in found.groups]


def test_copies_of_one_picture_are_grouped_and_other_pictures_are_not(copied_library, criterion):
    scan = _scan(criterion)
    job = Job.objects.get(pk=scan.job_id)
    assert job.status == Job.Status.SUCCEEDED and job.progress_done == job.progress_total == 18
    assert job.kind == Job.Kind.FIND_DUPLICATES and "pairs of images within distance 0.2" in job.message
    found = duplicate_groups(scan=scan)
    expected = [ids for ids in copied_library.values() if len(ids) > 1]
    assert sorted(map(sorted, _grouped(found))) == sorted(map(sorted, expected))
    assert found.group_count == 4 and found.images_in_groups == 16
    group = found.groups[0]
    assert found.max_distance == 0.11 and found.mutual == 3  # the defaults, below the scan's 0.2 and 10
    assert all(m.distance is None or 0 <= m.distance <= group.largest_distance <= 0.11 for m in group.members)
    # a lower threshold never joins more; at 0 only identical features stay together
    tighter = duplicate_groups(scan=scan, max_distance=0.0)
    assert tighter.images_in_groups < found.images_in_groups
    # each copy's nearest images are its other copies: every pair of a family is mutual within 3
    assert {len(g.members) for g in duplicate_groups(scan=scan, mutual=1).groups} == {1}  # mutual nearest: pairs
    assert duplicate_groups(scan=scan, mutual=10).group_count == 4


def test_a_scan_runs_again_without_adding_a_pair_twice(copied_library, criterion):
    from ranking.models import DuplicateChunk
    from ranking.services.duplicates import duplicate_chunk_process

    scan = _scan(criterion)
    pairs = scan.pairs.count()
    assert pairs == scan.pair_count > 0
    for chunk in DuplicateChunk.objects.filter(scan=scan):
        duplicate_chunk_process(chunk_id=chunk.pk)  # a redelivered task: its chunk is done already
    assert scan.pairs.count() == pairs


def test_marks_override_the_distances_and_become_judgments(copied_library, criterion):
    scan = _scan(criterion)
    group = duplicate_groups(scan=scan).groups[0]
    reference = group.reference.pk
    same, other = group.members[0].image.pk, group.members[1].image.pk
    stranger = next(iter(copied_library["hubble_deep_field.jpg"]))
    user = UserFactory(roles=["analyst"])

    duplicate_mark(user=user, criterion=criterion, reference_id=reference, image_id=same, verdict="duplicate")
    outcome = duplicate_mark(user=user, criterion=criterion, reference_id=reference, image_id=other,
                             verdict="distinct")
    assert outcome.mark == "distinct" and outcome.judgments == 1
    judgment = TripletJudgment.objects.get(user=user)
    triplet = judgment.triplet
    closer = triplet.candidate_a_id if judgment.answer == "a" else triplet.candidate_b_id
    assert triplet.query_id == reference and closer == same

    duplicate_mark(user=user, criterion=criterion, reference_id=reference, image_id=stranger, verdict="duplicate")
    regrouped = {frozenset(ids) for ids in _grouped(duplicate_groups(scan=scan))}
    holding_reference = next(ids for ids in regrouped if reference in ids)
    assert stranger in holding_reference  # marked the same picture: joined whatever the distance
    # marked a different picture: out of the reference's group, though the photo's other copies are close to both
    assert other not in holding_reference

    cleared = duplicate_mark(user=user, criterion=criterion, reference_id=reference, image_id=other, verdict=None)
    assert cleared.mark == "" and cleared.judgments == 0
    assert not DuplicateMark.objects.filter(image_a_id=min(reference, other), image_b_id=max(reference, other)).exists()


def test_a_scan_needs_an_embedded_version(db, criterion):
    from imagesearch.errors import AppError
    from tests.factories import ModelVersionFactory

    version = ModelVersionFactory(criterion=criterion, status="active", embedding_dim=8)
    with pytest.raises(AppError, match="has no embeddings yet"):
        duplicate_scan_start(criterion=criterion, version=version, dispatch=False)


def test_the_page_and_the_api_show_the_groups_and_take_marks(copied_library, criterion, client):
    admin = UserFactory(roles=["admin"])
    client.force_login(admin)
    first = client.get("/duplicates/").content.decode()
    assert "No scan yet" in first and "Prepare features for near-duplicates" in first
    assert client.post("/duplicates/prepare/", {"criterion": criterion.pk}).status_code == 302
    from ranking.models import ModelVersion

    preparing = ModelVersion.objects.get(hyperparameters__pooling="max")
    assert f"Version {preparing.pk}, features for near-duplicates, is being prepared" in client.get(
        "/duplicates/").content.decode()
    answer = client.post("/duplicates/scan/", {"criterion": criterion.pk, "max_distance": "0.2", "neighbours": "10"})
    assert answer.status_code == 302
    from ranking.models import DuplicateScan

    scan = DuplicateScan.objects.get()
    assert not scan.chunks.exists()  # the request only recorded the scan: listing its images is the job's first task
    duplicate_scan_prepare(scan_id=scan.pk, dispatch=False)
    assert scan.chunks.exists() and Job.objects.get(pk=scan.job_id).progress_total == 18
    duplicate_scan_run_inline(scan=scan)
    page = client.get("/duplicates/?distance=0.11&mutual=3").content.decode()
    assert "4 groups, 16 images in them." in page and "Same picture" in page
    assert client.get("/duplicates/?distance=abc").status_code == 400
    assert "No group on page 9: there is 1 page." in client.get("/duplicates/?page=9").content.decode()

    body = client.get("/api/duplicates/", {"distance": "0.11", "limit": 2}).json()
    assert body["group_count"] == 4 and len(body["groups"]) == 2
    group = body["groups"][0]
    reference, member = group["reference"]["id"], group["members"][0]["image"]["id"]
    marked = client.post("/api/duplicates/marks/", {"reference": reference, "image": member, "mark": "distinct"},
                         content_type="application/json")
    assert marked.status_code == 200 and marked.json() == {"mark": "distinct", "judgments": 0}
    refused = client.post("/api/duplicates/marks/", {"reference": reference, "image": reference, "mark": "distinct"},
                          content_type="application/json")
    assert refused.status_code == 400 and "against itself" in str(refused.json())

    labeler = UserFactory(roles=["labeler"])
    client.force_login(labeler)
    assert client.get("/duplicates/").status_code == 403
    assert client.get("/api/duplicates/").status_code == 403


def test_features_made_for_duplicates_are_max_pooled_and_scans_read_them_first(copied_library, criterion):
    from imagesearch.errors import AppError
    from ranking.models import ModelVersion
    from ranking.selectors import duplicate_versions
    from ranking.services.duplicates import duplicate_features_prepare
    from ranking.services.hyperparameters import hyperparameters_resolve
    from ranking.services.training import version_train

    active = ModelVersion.objects.get(status="active")
    version = duplicate_features_prepare(criterion=criterion, dispatch=False)
    version = version_train(version_id=version.pk, embed="inline")
    assert version.status == ModelVersion.Status.READY  # it serves no search unless an admin says so
    assert ModelVersion.objects.get(pk=active.pk).status == ModelVersion.Status.ACTIVE
    assert version.feature_extractor.backbone == "efficientnet_lite0:max"  # its own features, not the active's
    assert [v.pk for v in duplicate_versions(criterion=criterion)] == [version.pk, active.pk]
    scan = _scan(criterion)
    assert scan.version_id == version.pk
    expected = [ids for ids in copied_library.values() if len(ids) > 1]
    assert sorted(map(sorted, _grouped(duplicate_groups(scan=scan)))) == sorted(map(sorted, expected))
    with pytest.raises(AppError, match="pooling is one of"):
        hyperparameters_resolve(kind="pretrained", hyperparameters={"pooling": "median"})
    with pytest.raises(AppError, match="needs efficientnet_lite0"):
        hyperparameters_resolve(kind="pretrained", hyperparameters={"pooling": "max", "backbone": "resnet18"})
