"""Candidate triplets, judgments and the aggregated training set."""

from __future__ import annotations

import pytest

from labeling.models import Triplet, TripletJudgment
from labeling.selectors import training_triplets
from labeling.services.judgments import INVALID_ANSWER, judgment_record
from labeling.services.triplets import (
    CandidatePolicy,
    triplet_candidates,
    triplet_get_or_create,
    triplets_generate,
)
from ranking.selectors import nearest_images
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_training_set_is_the_majority_vote_without_ties_or_cant_tell(criterion, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    users = [UserFactory() for _ in range(3)]
    majority_a = triplet_get_or_create(criterion=criterion, query_id=v[0], candidate_ids=(v[1], h[0]))
    majority_b = triplet_get_or_create(criterion=criterion, query_id=v[2], candidate_ids=(v[3], h[1]))
    tie = triplet_get_or_create(criterion=criterion, query_id=v[4], candidate_ids=(v[5], h[2]))
    unsure = triplet_get_or_create(criterion=criterion, query_id=v[6], candidate_ids=(v[7], h[3]))
    for triplet, answers in ((majority_a, "aab"), (majority_b, "bub"), (tie, "abu"), (unsure, "uu")):
        for user, answer in zip(users, answers):
            judgment_record(triplet=triplet, user=user, answer={"u": "unsure"}.get(answer, answer))

    assert training_triplets(criterion=criterion) == [
        (majority_a.query_id, majority_a.candidate_a_id, majority_a.candidate_b_id),
        (majority_b.query_id, majority_b.candidate_b_id, majority_b.candidate_a_id),
    ]


def test_a_triplet_is_stored_once_whatever_the_candidate_order(criterion, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    first = triplet_get_or_create(criterion=criterion, query_id=v[0], candidate_ids=(h[0], v[1]))
    again = triplet_get_or_create(criterion=criterion, query_id=v[0], candidate_ids=(v[1], h[0]))
    assert first == again and first.candidate_a_id < first.candidate_b_id
    with pytest.raises(ValueError):
        triplet_get_or_create(criterion=criterion, query_id=v[0], candidate_ids=(v[0], h[0]))


def test_judgments_reject_unknown_answers(criterion, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    triplet = triplet_get_or_create(criterion=criterion, query_id=v[0], candidate_ids=(v[1], h[0]))
    with pytest.raises(ValueError, match=INVALID_ANSWER):
        judgment_record(triplet=triplet, answer="left")
    assert not TripletJudgment.objects.exists()


def test_candidates_come_from_the_querys_neighbourhood_at_different_ranks(autoencoder, criterion, stripes_library):
    query = stripes_library["v"][0]
    ranked = [hit.image.pk for hit in nearest_images(version=autoencoder, image_id=query, k=15)]
    policy = CandidatePolicy(near_ranks=(1, 3), mid_ranks=(6, 15), far_share=0.0)
    chosen = triplet_candidates(version=autoencoder, query_ids=[query] * 20, policy=policy, seed=1)
    assert len(chosen) == 20
    for q, near, other, origin in chosen:
        near_rank, other_rank = origin["ranks"]
        assert q == query and 1 <= near_rank <= 3 and 6 <= other_rank <= 15
        assert ranked[near_rank - 1] == near and ranked[other_rank - 1] == other


def test_generated_triplets_never_use_excluded_images(autoencoder, criterion, stripes_library):
    excluded = set(stripes_library["h"][:4])
    queries = stripes_library["v"] * 3
    triplets = triplets_generate(criterion=criterion, version=autoencoder, query_ids=queries, seed=2,
                                 exclude_ids=excluded, policy=CandidatePolicy(near_ranks=(1, 3), mid_ranks=(4, 10)))
    assert triplets and Triplet.objects.count() == len({t.pk for t in triplets})
    assert not excluded & {i for t in triplets for i in (t.candidate_a_id, t.candidate_b_id)}
