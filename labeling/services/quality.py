"""Gold triplets: triplets with a known answer, mixed into labelers' queues to measure accuracy."""

from __future__ import annotations

from collections import Counter

from django.utils import timezone

from imagesearch.errors import AppError
from labeling.models import Triplet, TripletJudgment

NO_MAJORITY = "This triplet has no majority answer to make gold; give the answer."
INVALID_GOLD_ANSWER = "A gold answer is 'a' or 'b'."


def gold_make(*, triplet: Triplet, answer: str | None = None) -> Triplet:
    """Make a judged triplet gold, with the given answer or else its judgments' majority answer."""
    if answer is None:
        votes = Counter(triplet.judgments.exclude(answer=TripletJudgment.Answer.UNSURE)
                        .values_list("answer", flat=True)).most_common()
        if not votes or (len(votes) > 1 and votes[0][1] == votes[1][1]):
            raise AppError(NO_MAJORITY, field="answer")
        answer = votes[0][0]
    if answer not in ("a", "b"):
        raise AppError(INVALID_GOLD_ANSWER, field="answer")
    triplet.gold_answer = answer
    triplet.gold_made_at = timezone.now()
    triplet.save(update_fields=["gold_answer", "gold_made_at"])
    return triplet


def gold_remove(*, triplet: Triplet) -> Triplet:
    triplet.gold_answer = ""
    triplet.gold_made_at = None
    triplet.save(update_fields=["gold_answer", "gold_made_at"])
    return triplet
