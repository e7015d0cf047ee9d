"""Search feedback: an analyst's relevant / not relevant marks on results become judged triplets.

For one analyst, criterion and query image, every pair of a result marked
relevant and one marked not relevant is the triplet (query, relevant, not
relevant) answered "the relevant one is more similar", with source "search
feedback". The marks are the state; the judgments are derived from them on each
change, so setting the same mark twice adds nothing and changing or clearing a
mark withdraws the judgments it made.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from imagesearch.models import Image
from labeling.models import SearchFeedback, Triplet, TripletJudgment
from labeling.services.judgments import judgment_record, triplet_update_complete
from labeling.services.triplets import triplet_get_or_create
from ranking.models import SimilarityCriterion

FEEDBACK_LOCK = 0x6662  # advisory lock namespace: one reconciliation per (analyst, query) at a time
SELF_MARK = "The query image cannot be marked as a result of itself."
UNKNOWN_IMAGE = "No image {image_id} in the library."


@dataclass
class FeedbackOutcome:
    relevant: list[int]
    not_relevant: list[int]
    judgments: int  # search-feedback judgments this analyst now has on this query
    added: int
    withdrawn: int


def search_feedback_mark(*, user, criterion: SimilarityCriterion, query_id: int, result_id: int,
                         relevant: bool | None) -> FeedbackOutcome:
    """Mark one result relevant (True), not relevant (False) or clear its mark (None)."""
    if result_id == query_id:
        raise ValueError(SELF_MARK)
    for image_id in (query_id, result_id):
        if not Image.objects.filter(pk=image_id).exists():
            raise ValueError(UNKNOWN_IMAGE.format(image_id=image_id))
    with transaction.atomic():
        _lock(user, query_id)
        marks = SearchFeedback.objects.filter(criterion=criterion, user=user, query_id=query_id, result_id=result_id)
        if relevant is None:
            marks.delete()
        else:
            SearchFeedback.objects.update_or_create(criterion=criterion, user=user, query_id=query_id,
                                                    result_id=result_id, defaults={"relevant": relevant})
        return _reconcile(user, criterion, query_id)


def _lock(user, query_id: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [FEEDBACK_LOCK, (user.pk << 20) ^ query_id])


def _reconcile(user, criterion: SimilarityCriterion, query_id: int) -> FeedbackOutcome:
    marks = dict(SearchFeedback.objects.filter(criterion=criterion, user=user, query_id=query_id)
                 .values_list("result_id", "relevant"))
    relevant = sorted(i for i, r in marks.items() if r)
    not_relevant = sorted(i for i, r in marks.items() if not r)
    wanted = {}  # triplet id -> answer
    for good in relevant:
        for bad in not_relevant:
            triplet = triplet_get_or_create(criterion=criterion, query_id=query_id, candidate_ids=(good, bad),
                                            origin={"strategy": "search_feedback"})
            wanted[triplet.pk] = TripletJudgment.Answer.A if triplet.candidate_a_id == good else TripletJudgment.Answer.B
    existing = TripletJudgment.objects.filter(user=user, source=TripletJudgment.Source.SEARCH_FEEDBACK,
                                              triplet__criterion=criterion, triplet__query_id=query_id)
    stale = [(j.pk, j.triplet_id) for j in existing.only("pk", "triplet_id", "answer")
             if wanted.get(j.triplet_id) != j.answer]
    TripletJudgment.objects.filter(pk__in=[pk for pk, _ in stale]).delete()
    kept = set(existing.values_list("triplet_id", flat=True))
    added = 0
    for triplet in Triplet.objects.filter(pk__in=[t for t in wanted if t not in kept]).order_by("pk"):
        judgment_record(triplet=triplet, answer=wanted[triplet.pk], user=user,
                        source=TripletJudgment.Source.SEARCH_FEEDBACK)
        added += 1
    for triplet_id in {t for _, t in stale} | (set(wanted) - kept):
        triplet_update_complete(triplet_id)
    return FeedbackOutcome(relevant=relevant, not_relevant=not_relevant, judgments=len(wanted), added=added,
                           withdrawn=len(stale))
