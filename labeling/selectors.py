"""Reads of triplets and judgments; above all, the training set a ranking model learns from."""

from __future__ import annotations

from django.db.models import Count, Q

from labeling.models import Triplet, TripletJudgment
from ranking.models import SimilarityCriterion


def training_triplets(*, criterion: SimilarityCriterion) -> list[tuple[int, int, int]]:
    """The aggregate of the criterion's judgments as (query, more similar, less similar) image ids.

    Majority vote per triplet over its "A" and "B" answers; "can't tell" answers
    count for neither side, and ties (including triplets answered only "can't
    tell") are left out. Ordered by triplet id, so the same judgments always give
    the same list.
    """
    rows = (
        Triplet.objects.filter(criterion=criterion)
        .annotate(
            votes_a=Count("judgments", filter=Q(judgments__answer=TripletJudgment.Answer.A)),
            votes_b=Count("judgments", filter=Q(judgments__answer=TripletJudgment.Answer.B)),
        )
        .exclude(votes_a=0, votes_b=0)
        .order_by("pk")
        .values_list("query_id", "candidate_a_id", "candidate_b_id", "votes_a", "votes_b")
    )
    out = []
    for query, a, b, votes_a, votes_b in rows:
        if votes_a > votes_b:
            out.append((query, a, b))
        elif votes_b > votes_a:
            out.append((query, b, a))
    return out
