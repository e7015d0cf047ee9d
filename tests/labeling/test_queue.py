"""The labeling queue: what each labeler is given, answers, skips, undo, gold and quality."""

from __future__ import annotations

import random

import numpy as np
import pytest

from labeling.models import Triplet, TripletAssignment, TripletJudgment
from labeling.selectors import (
    criteria_for_labeler,
    labeler_quality,
    labeler_stats,
    training_triplets,
    triplets_waiting,
)
from labeling.services.judgments import (
    NOT_ASSIGNED,
    NOTHING_TO_UNDO,
    assignment_skip,
    assignments_next,
    judgment_submit,
    judgment_undo,
)
from labeling.services.quality import NO_MAJORITY, gold_make
from labeling.services.triplets import (
    informative_pair,
    triplet_candidates_active,
    triplets_refill,
)
from labeling.tasks import refill_triplets
from ranking.services.criteria import criterion_create
from tests.factories import UserFactory, make_triplet

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelers(db):
    return [UserFactory(roles=["labeler"]) for _ in range(3)]


def _triplets(criterion, library, n):
    v, h = library["v"], library["h"]
    return [make_triplet(criterion=criterion, query=v[i], candidates=(v[i + 1], h[i]))
            for i in range(n)]


def test_a_labeler_is_never_given_the_same_triplet_twice(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    ann = labelers[0]
    seen = []
    for _ in range(12):
        (triplet,) = assignments_next(user=ann, criterion=criterion)
        seen.append(triplet.pk)
        judgment_submit(user=ann, triplet_id=triplet.pk, answer="a")
    assert len(set(seen)) == 12
    # without a model, the queue is filled with random triplets, so it never runs dry
    assert Triplet.objects.filter(criterion=criterion, origin__strategy="random").exists()


def test_each_triplet_goes_to_k_labelers_and_is_held_while_open(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    settings.LABELING_JUDGMENTS_PER_TRIPLET = 2
    settings.LABELING_QUEUE_TARGET = 0  # only the triplets made here
    (only,) = _triplets(criterion, stripes_library, 1)
    ann, bob, cid = labelers
    assert [t.pk for t in assignments_next(user=ann, criterion=criterion)] == [only.pk]
    assert [t.pk for t in assignments_next(user=bob, criterion=criterion)] == [only.pk]
    # two labelers hold it: a third one gets a freshly generated triplet instead
    (other,) = assignments_next(user=cid, criterion=criterion)
    assert other.pk != only.pk


def test_an_abandoned_assignment_frees_the_triplet_for_others(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    settings.LABELING_QUEUE_TARGET = 0
    (only,) = _triplets(criterion, stripes_library, 1)
    ann, bob, _ = labelers
    assignments_next(user=ann, criterion=criterion)
    assert only not in triplets_waiting(criterion=criterion)
    settings.LABELING_ASSIGNMENT_SECONDS = 0
    assert [t.pk for t in assignments_next(user=bob, criterion=criterion)] == [only.pk]


def test_answers_need_an_assignment_and_count_once(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    ann, bob, _ = labelers
    (triplet,) = assignments_next(user=ann, criterion=criterion)
    with pytest.raises(ValueError, match=NOT_ASSIGNED):
        judgment_submit(user=bob, triplet_id=triplet.pk, answer="a")
    judgment = judgment_submit(user=ann, triplet_id=triplet.pk, answer="b", seconds=1.5)
    assert (judgment.user, judgment.answer, judgment.seconds, judgment.source) == (ann, "b", 1.5, "labeling")
    with pytest.raises(ValueError, match=NOT_ASSIGNED):
        judgment_submit(user=ann, triplet_id=triplet.pk, answer="a")
    assert TripletJudgment.objects.count() == 1


def test_skip_passes_the_triplet_to_others_and_never_back(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    settings.LABELING_QUEUE_TARGET = 0
    (only,) = _triplets(criterion, stripes_library, 1)
    ann, bob, _ = labelers
    assignments_next(user=ann, criterion=criterion)
    assignment_skip(user=ann, triplet_id=only.pk)
    assert [t.pk for t in assignments_next(user=bob, criterion=criterion)] == [only.pk]
    assert only.pk not in [t.pk for t in assignments_next(user=ann, criterion=criterion, count=3)]
    assert not TripletJudgment.objects.exists()


def test_undo_removes_the_last_answer_and_gives_the_triplet_back(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    ann = labelers[0]
    first, second = assignments_next(user=ann, criterion=criterion, count=2)
    judgment_submit(user=ann, triplet_id=first.pk, answer="a")
    judgment_submit(user=ann, triplet_id=second.pk, answer="b")
    assert judgment_undo(user=ann, criterion=criterion).pk == second.pk
    assert list(TripletJudgment.objects.values_list("triplet_id", "answer")) == [(first.pk, "a")]
    judgment_submit(user=ann, triplet_id=second.pk, answer="a")  # answered again, differently
    assert TripletJudgment.objects.get(triplet=second).answer == "a"
    judgment_undo(user=ann, criterion=criterion)
    judgment_undo(user=ann, criterion=criterion)
    with pytest.raises(ValueError, match=NOTHING_TO_UNDO):
        judgment_undo(user=ann, criterion=criterion)


def test_disagreement_asks_one_more_labeler_first(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    settings.LABELING_JUDGMENTS_PER_TRIPLET = 2
    settings.LABELING_MAX_JUDGMENTS_PER_TRIPLET = 3
    settings.LABELING_QUEUE_TARGET = 0
    contested, calm = _triplets(criterion, stripes_library, 2)
    Triplet.objects.filter(pk=calm.pk).update(priority=0.9)
    ann, bob, cid = labelers
    for user, answer in ((ann, "a"), (bob, "b")):
        for triplet in assignments_next(user=user, criterion=criterion, count=2):
            judgment_submit(user=user, triplet_id=triplet.pk, answer=answer if triplet == contested else "a")
    contested.refresh_from_db()
    assert contested.judgments_wanted == 3
    assert assignments_next(user=cid, criterion=criterion)[0].pk == contested.pk


def test_gold_triplets_are_mixed_in_and_score_labelers(criterion, stripes_library, labelers, settings):
    triplets = _triplets(criterion, stripes_library, 4)
    ann, bob, _ = labelers
    with pytest.raises(ValueError, match=NO_MAJORITY):
        gold_make(triplet=triplets[0])
    for triplet in triplets[:3]:
        gold_make(triplet=triplet, answer="a")
    settings.LABELING_GOLD_RATE = 1.0
    for user, answers in ((ann, "aaa"), (bob, "abb")):
        given = assignments_next(user=user, criterion=criterion, count=3, rng=random.Random(0))
        assert {t.pk for t in given} == {t.pk for t in triplets[:3]}
        for triplet, answer in zip(given, answers):
            judgment_submit(user=user, triplet_id=triplet.pk, answer=answer)
    quality = {q.username: q for q in labeler_quality(criterion=criterion)}
    assert quality[ann.username].gold_accuracy == 1.0
    assert quality[bob.username].gold_accuracy == pytest.approx(1 / 3)
    stats = labeler_stats(user=bob, criterion=criterion)
    assert (stats.total, stats.gold_answered, stats.gold_correct) == (3, 3, 1)


def test_training_set_uses_gold_answers_and_can_exclude_inaccurate_labelers(criterion, stripes_library, labelers,
                                                                            settings):
    settings.LABELING_GOLD_RATE = 0
    settings.LABELING_MIN_GOLD_ANSWERS = 2
    gold_1, gold_2, plain = _triplets(criterion, stripes_library, 3)
    gold_make(triplet=gold_1, answer="a")
    gold_make(triplet=gold_2, answer="b")
    ann, bob, _ = labelers
    for user, answers in ((ann, "aba"), (bob, "bab")):  # bob gets both gold triplets wrong
        for triplet, answer in zip((gold_1, gold_2, plain), answers):
            TripletAssignment.objects.create(triplet=triplet, user=user)
            judgment_submit(user=user, triplet_id=triplet.pk, answer=answer)
    with_gold = [(gold_1.query_id, gold_1.candidate_a_id, gold_1.candidate_b_id),
                 (gold_2.query_id, gold_2.candidate_b_id, gold_2.candidate_a_id)]
    assert training_triplets(criterion=criterion) == with_gold  # plain is a 1:1 tie
    assert training_triplets(criterion=criterion, min_gold_accuracy=0.8) == with_gold + [
        (plain.query_id, plain.candidate_a_id, plain.candidate_b_id)]  # ann's answer alone


def test_agreement_per_labeler(criterion, stripes_library, labelers):
    triplets = _triplets(criterion, stripes_library, 2)
    ann, bob, cid = labelers
    for user, answers in ((ann, "aa"), (bob, "ab"), (cid, "ab")):
        for triplet, answer in zip(triplets, answers):
            TripletAssignment.objects.create(triplet=triplet, user=user)
            judgment_submit(user=user, triplet_id=triplet.pk, answer=answer)
    quality = {q.username: q for q in labeler_quality(criterion=criterion)}
    # triplet 2: ann's "a" against bob's and cid's "b"
    assert quality[ann.username].agreement == 0.5
    assert quality[bob.username].agreement == 1.0


def test_criteria_open_to_a_labeler(criterion, labelers):
    ann, bob, _ = labelers
    private = criterion_create(name="Structure")
    private.labelers.add(bob)
    assert list(criteria_for_labeler(user=ann)) == [criterion]
    assert list(criteria_for_labeler(user=bob)) == [criterion, private]
    assert not criteria_for_labeler(user=UserFactory(roles=["analyst"])).exists()


def test_informative_pair_is_the_one_the_query_lies_midway_between():
    query = np.array([1.0, 0.0, 0.0])
    candidates = np.array([
        [0.99, 0.14, 0.0],  # a near-duplicate of the query
        [0.98, 0.0, 0.2],  # another, close to the first: "can't tell"
        [0.8, 0.6, 0.0],  # one kind of image
        [0.8, -0.6, 0.0],  # the opposite kind, as far from the query
    ])
    i, j, score = informative_pair(query, candidates)
    # d(a, b) = 1.2 and d(q, a) = d(q, b) = √0.4: the ratio 1.2 / (2 √0.4)
    assert (i, j) == (2, 3) and score == pytest.approx(1.2 / (2 * 0.4 ** 0.5))


def test_active_selection_serves_the_least_certain_triplets_first(autoencoder, criterion, stripes_library, settings):
    queries = stripes_library["v"][:6] + stripes_library["h"][:6]
    chosen = triplet_candidates_active(version=autoencoder, query_ids=queries, count=4, explore_share=0.25, seed=1)
    assert len(chosen) == 4 and len({q for q, *_ in chosen}) == 4
    active = [origin for *_, origin in chosen if origin["strategy"] == "active"]
    assert len(active) == 3 and all(0 <= o["score"] <= 1 for o in active)
    assert [o["score"] for o in active] == sorted((o["score"] for o in active), reverse=True)
    settings.LABELING_QUEUE_TARGET = 5
    settings.LABELING_SELECTION = "active"
    assert triplets_refill(criterion=criterion) == 5
    served = list(triplets_waiting(criterion=criterion))
    assert served[0].origin["strategy"] == "active"
    assert [t.priority for t in served] == sorted((t.priority for t in served), reverse=True)
    assert triplets_refill(criterion=criterion) == 0  # full


def test_refill_task_fills_each_focus_queue(autoencoder, criterion, stripes_library, settings):
    from imagesearch.models import Collection
    from labeling.services.focus import focus_create

    settings.LABELING_QUEUE_TARGET = 3
    for collection in Collection.objects.all():
        focus = focus_create(criterion=criterion, name=collection.name, kind="collection", collection=collection)
        assert refill_triplets(criterion.pk, focus.pk) == 3
        in_queue = triplets_waiting(criterion=criterion, focus=focus)
        assert {t.query.collection_id for t in in_queue} == {collection.pk}
        assert {t.candidate_a.collection_id for t in in_queue} | {t.candidate_b.collection_id for t in in_queue} == {
            collection.pk}
    assert refill_triplets(criterion.pk, 999_999) == 0  # a focus deleted since the refill was queued


def test_a_reopened_page_gets_back_the_triplets_held_for_it(criterion, stripes_library, labelers, settings):
    settings.LABELING_GOLD_RATE = 0
    ann = labelers[0]
    held = assignments_next(user=ann, criterion=criterion, count=3)
    judgment_submit(user=ann, triplet_id=held[0].pk, answer="a")
    again = assignments_next(user=ann, criterion=criterion, count=3, resume=True)
    assert [t.pk for t in again[:2]] == [t.pk for t in held[1:]] and again[2].pk not in {t.pk for t in held}


def test_a_labeler_who_skipped_everything_queued_still_gets_new_triplets(criterion, stripes_library, labelers,
                                                                         settings):
    settings.LABELING_GOLD_RATE = 0
    settings.LABELING_QUEUE_TARGET = 10
    ann = labelers[0]
    for triplet in assignments_next(user=ann, criterion=criterion, count=12):
        assignment_skip(user=ann, triplet_id=triplet.pk)
    # the queue is full for others, but nothing in it is left for ann: she still gets one
    assert len(assignments_next(user=ann, criterion=criterion)) == 1


def test_a_refill_draws_its_queries_among_embedded_images_only(criterion, autoencoder, settings, monkeypatch):
    """Images imported a moment ago have no embedding yet: the refill must not embed them itself (a
    224 px forward each, in the refill task: after a large import it held a worker for minutes)."""
    from imagesearch.models import Image
    from ranking import selectors
    from ranking.models import Embedding
    from tests.factories import make_image

    fresh = {make_image(label="new").pk for _ in range(6)}
    assert not Embedding.objects.filter(image_id__in=fresh).exists()

    def no_live_embedding(**kwargs):
        raise AssertionError("the refill embedded an image itself")

    monkeypatch.setattr(selectors, "embed_file", no_live_embedding)
    added = triplets_refill(criterion=criterion, target=10, seed=3)
    assert added > 0
    queries = set(Triplet.objects.values_list("query_id", flat=True))
    assert queries and not queries & fresh
    assert Image.objects.count() == 22
