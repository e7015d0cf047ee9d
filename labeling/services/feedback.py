"""Search feedback: an analyst's relevant / not relevant marks on results become judged triplets.

For one analyst, criterion and query image, every pair of a result marked
relevant and one marked not relevant is the triplet (query, relevant, not
relevant) answered "the relevant one is more similar", with source "search
feedback". The marks are the state and the judgments follow them: setting the same mark
twice adds nothing, and changing or clearing a mark withdraws the judgments it
made.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q

from imagesearch.errors import AppError
from imagesearch.models import Image
from labeling.models import SearchFeedback, Triplet, TripletJudgment
from labeling.services.judgments import judgment_record, triplet_update_complete
from labeling.services.triplets import triplet_get_or_create
from ranking.models import SimilarityCriterion

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
    """Mark one result relevant (True), not relevant (False) or clear its mark (None).

    Only the judgments that involve this result change, so a click costs one
    query per mark of the other kind, however many marks the query has.
    """
    if result_id == query_id:
        raise AppError(SELF_MARK)
    for image_id in (query_id, result_id):
        if not Image.objects.filter(pk=image_id).exists():
            raise AppError(UNKNOWN_IMAGE.format(image_id=image_id))
    with transaction.atomic():
        with connection.cursor() as cursor:  # one change per (analyst, query) at a time
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           [f"search-feedback:{user.pk}:{query_id}"])
        mine = TripletJudgment.objects.filter(user=user, source=TripletJudgment.Source.SEARCH_FEEDBACK,
                                              triplet__criterion=criterion, triplet__query_id=query_id)
        previous = SearchFeedback.objects.filter(criterion=criterion, user=user, query_id=query_id,
                                                 result_id=result_id).values_list("relevant", flat=True).first()
        added = withdrawn = 0
        if previous != relevant:
            withdrawn = _withdraw(mine.filter(Q(triplet__candidate_a_id=result_id)
                                              | Q(triplet__candidate_b_id=result_id)))
            if relevant is None:
                SearchFeedback.objects.filter(criterion=criterion, user=user, query_id=query_id,
                                              result_id=result_id).delete()
            else:
                SearchFeedback.objects.update_or_create(criterion=criterion, user=user, query_id=query_id,
                                                        result_id=result_id, defaults={"relevant": relevant})
                others = SearchFeedback.objects.filter(criterion=criterion, user=user, query_id=query_id,
                                                       relevant=not relevant).values_list("result_id", flat=True)
                for other in others:
                    good, bad = (result_id, other) if relevant else (other, result_id)
                    _judge(user, criterion, query_id, good, bad)
                    added += 1
        marks = dict(SearchFeedback.objects.filter(criterion=criterion, user=user, query_id=query_id)
                     .values_list("result_id", "relevant"))
        return FeedbackOutcome(relevant=sorted(i for i, r in marks.items() if r),
                               not_relevant=sorted(i for i, r in marks.items() if not r),
                               judgments=mine.count(), added=added, withdrawn=withdrawn)


def _judge(user, criterion: SimilarityCriterion, query_id: int, good: int, bad: int) -> None:
    triplet = triplet_get_or_create(criterion=criterion, query_id=query_id, candidate_ids=(good, bad),
                                    origin={"strategy": "search_feedback"})
    answer = TripletJudgment.Answer.A if triplet.candidate_a_id == good else TripletJudgment.Answer.B
    judgment_record(triplet=triplet, answer=answer, user=user, source=TripletJudgment.Source.SEARCH_FEEDBACK)
    triplet_update_complete(triplet.pk)


def _withdraw(judgments) -> int:
    """Delete judgments; a triplet that feedback made and nothing else uses goes with them, so it
    does not turn up in the labelers' queue."""
    triplet_ids = list(judgments.values_list("triplet_id", flat=True))
    judgments.delete()
    for triplet_id in triplet_ids:
        triplet_update_complete(triplet_id)
    Triplet.objects.filter(pk__in=triplet_ids, origin__strategy="search_feedback", judgments__isnull=True,
                           assignments__isnull=True, gold_answer="").delete()
    return len(triplet_ids)
