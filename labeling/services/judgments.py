"""Handing triplets to labelers and recording, skipping and undoing their answers."""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.utils import timezone

from imagesearch.errors import AppError
from labeling.models import LabelingFocus, Triplet, TripletAssignment, TripletJudgment
from labeling.selectors import focus_triplets_q, triplets_waiting
from ranking.models import SimilarityCriterion

INVALID_ANSWER = "The answer must be 'a', 'b' or 'unsure'."
NOT_ASSIGNED = "This triplet was not given to you, or you already answered it."
NOTHING_TO_UNDO = "There is no recent answer of yours to undo."
ALREADY_ANSWERED = "You already answered this triplet."

UNDO_WINDOW = timedelta(hours=1)
# a contested triplet jumps ahead of every model-chosen one (their priorities are ≤ 1)
DISAGREEMENT_PRIORITY = 10.0


def judgment_record(
    *,
    triplet: Triplet,
    answer: str,
    user=None,
    source: str = TripletJudgment.Source.LABELING,
    seconds: float | None = None,
    import_key: str | None = None,
) -> TripletJudgment:
    """Store one answer to "which of A and B is more similar to the query?"."""
    if answer not in TripletJudgment.Answer.values:
        raise AppError(INVALID_ANSWER, field="triplet")
    judgment = TripletJudgment(triplet=triplet, answer=answer, user=user, source=source, seconds=seconds,
                               import_key=import_key)
    judgment.full_clean(validate_constraints=False)  # the database checks uniqueness, race-free
    try:
        with transaction.atomic():
            judgment.save()
    except IntegrityError:
        raise AppError(ALREADY_ANSWERED, field="triplet") from None
    from ranking.tasks import retrain_if_due_soon

    retrain_if_due_soon(criterion_id=triplet.criterion_id)  # the automatic loop, if it is on
    return judgment


def assignments_next(*, user, criterion: SimilarityCriterion, focus: LabelingFocus | None = None,
                     count: int = 1, rng: random.Random | None = None, resume: bool = False) -> list[Triplet]:
    """Up to ``count`` triplets for the labeler to answer next, held for them (see ``TripletAssignment``),
    all three images within ``focus`` when given.

    Triplets the labeler was given before never come back. Gold triplets are mixed
    in at ``LABELING_GOLD_RATE``; the others are served highest priority first,
    while fewer than ``judgments_wanted`` labelers hold or answered them. When the
    queue runs low a refill is queued, and an empty queue is refilled at once, so
    the labeler always gets a triplet while the library has three images.

    ``resume`` (a page just opened): first the labeler's own triplets still held
    for them, so a reload or a second tab strands none.
    """
    from labeling.tasks import refill_triplets_soon

    rng = rng or random.Random()
    served: list[Triplet] = _held_by(user, criterion, focus)[:count] if resume else []
    for _ in range(count - len(served)):
        triplet = None
        if rng.random() < settings.LABELING_GOLD_RATE:
            triplet = _assign_first(user, _gold_for(user, criterion, focus))
        if triplet is None:
            triplet = _assign_first(user, _waiting_for(user, criterion, focus))
        if triplet is None:
            from labeling.services.triplets import triplets_refill

            # enough to go on with, counting only what this labeler may still get; the task adds
            # the rest, and a labeler never waits behind the task's lock (wait=False)
            triplets_refill(criterion=criterion, focus=focus, target=max(count, 10), user=user,
                            wait=False)
            triplet = _assign_first(user, _waiting_for(user, criterion, focus))
        if triplet is None:
            break
        served.append(triplet)
    refill_triplets_soon(criterion_id=criterion.pk, focus_id=focus.pk if focus else None)
    return served


def _gold_for(user, criterion, focus):
    gold = (Triplet.objects.filter(focus_triplets_q(focus), criterion=criterion).exclude(gold_answer="")
            .exclude(assignments__user=user))
    return gold.order_by("?")


def _waiting_for(user, criterion, focus):
    return triplets_waiting(criterion=criterion, focus=focus).exclude(assignments__user=user)


def _held_by(user, criterion, focus) -> list[Triplet]:
    cutoff = timezone.now() - timedelta(seconds=settings.LABELING_ASSIGNMENT_SECONDS)
    held = Triplet.objects.filter(focus_triplets_q(focus), criterion=criterion, assignments__user=user,
                                  assignments__created_at__gte=cutoff, assignments__status=TripletAssignment.Status.OPEN)
    return list(held.select_related("query", "candidate_a", "candidate_b", "criterion")
                .order_by("assignments__created_at", "pk"))


def _assign_first(user, triplets) -> Triplet | None:
    """Lock the first triplet no one else is taking right now and assign it to the user."""
    from labeling.selectors import triplet_taken

    passed: list[int] = []
    for _ in range(5):
        try:
            with transaction.atomic():
                triplet = (triplets.exclude(pk__in=passed).select_for_update(skip_locked=True, of=("self",))
                           .select_related("query", "candidate_a", "candidate_b", "criterion").first())
                if triplet is None:
                    return None
                # the queue query saw a snapshot from before the lock: a labeler who committed in
                # between may have taken the last place, so count again now that the row is ours
                if not triplet.gold_answer and triplet_taken(triplet_id=triplet.pk) >= triplet.judgments_wanted:
                    passed.append(triplet.pk)
                    continue
                TripletAssignment.objects.create(triplet=triplet, user=user)
            return triplet
        except IntegrityError:  # the same labeler in two tabs took it a moment ago
            passed.append(triplet.pk)
    return None


def judgment_submit(*, user, triplet_id: int, answer: str, seconds: float | None = None) -> TripletJudgment:
    """Record a labeler's answer to a triplet they were given; an answer that splits the labelers
    asks one more labeler (up to ``LABELING_MAX_JUDGMENTS_PER_TRIPLET``), first in the queue."""
    if answer not in TripletJudgment.Answer.values:
        raise AppError(INVALID_ANSWER, field="triplet")
    with transaction.atomic():
        assignment = (TripletAssignment.objects.select_for_update().select_related("triplet")
                      .filter(user=user, triplet_id=triplet_id, status=TripletAssignment.Status.OPEN).first())
        if assignment is None:
            raise AppError(NOT_ASSIGNED, field="triplet")
        Triplet.objects.select_for_update().filter(pk=triplet_id).first()  # serialise the triplet's bookkeeping
        judgment = judgment_record(triplet=assignment.triplet, answer=answer, user=user, seconds=seconds)
        assignment.status = TripletAssignment.Status.ANSWERED
        assignment.save(update_fields=["status"])
        assignment.triplet.refresh_from_db()
        _ask_another_labeler_if_split(assignment.triplet)
        triplet_update_complete(assignment.triplet_id)
    return judgment


def _ask_another_labeler_if_split(triplet: Triplet) -> None:
    """Once the wanted answers are in and they split A against B, ask one more labeler, first."""
    answers = list(triplet.judgments.filter(answer__in=["a", "b"]).values_list("answer", flat=True))
    answered = triplet.judgments.count()
    split = answers and answers.count("a") == answers.count("b")
    if (split and answered >= triplet.judgments_wanted and not triplet.gold_answer
            and answered < settings.LABELING_MAX_JUDGMENTS_PER_TRIPLET):
        Triplet.objects.filter(pk=triplet.pk).update(judgments_wanted=answered + 1, priority=DISAGREEMENT_PRIORITY)


def triplet_update_complete(triplet_id: int) -> None:
    """A triplet leaves the queue once it has its wanted judgments, from any source."""
    answered = TripletJudgment.objects.filter(triplet_id=triplet_id).count()
    Triplet.objects.filter(pk=triplet_id).update(
        complete=ExpressionWrapper(Q(judgments_wanted__lte=answered), output_field=BooleanField()))


def assignment_skip(*, user, triplet_id: int) -> None:
    """The labeler passes on a triplet: it goes to others, never back to them."""
    updated = TripletAssignment.objects.filter(
        user=user, triplet_id=triplet_id, status=TripletAssignment.Status.OPEN
    ).update(status=TripletAssignment.Status.SKIPPED)
    if not updated:
        raise AppError(NOT_ASSIGNED, field="triplet")


def judgment_undo(*, user, criterion: SimilarityCriterion) -> Triplet:
    """Delete the labeler's latest labeling-page answer (of the last hour) and give the triplet back to them."""
    with transaction.atomic():
        judgment = (TripletJudgment.objects.select_for_update()
                    .filter(user=user, triplet__criterion=criterion, source=TripletJudgment.Source.LABELING,
                            created_at__gte=timezone.now() - UNDO_WINDOW)
                    .order_by("-created_at", "-id").first())
        if judgment is None:
            raise AppError(NOTHING_TO_UNDO)
        Triplet.objects.select_for_update().filter(pk=judgment.triplet_id).first()
        triplet = judgment.triplet
        judgment.delete()
        TripletAssignment.objects.filter(user=user, triplet=triplet).update(
            status=TripletAssignment.Status.OPEN, created_at=timezone.now())
        triplet_update_complete(triplet.pk)
    return Triplet.objects.select_related("query", "candidate_a", "candidate_b", "criterion").get(pk=triplet.pk)
