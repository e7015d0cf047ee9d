"""Reads of triplets and judgments: the labeling queue, labelers' figures and quality, and the
training set a ranking model learns from."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import BooleanField, Count, ExpressionWrapper, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from imagesearch.models import Image
from labeling.models import FocusImage, LabelingFocus, Triplet, TripletAssignment, TripletJudgment
from ranking.models import SimilarityCriterion


def _taken_filter() -> Q:
    cutoff = timezone.now() - timedelta(seconds=settings.LABELING_ASSIGNMENT_SECONDS)
    return Q(status=TripletAssignment.Status.ANSWERED) | Q(status=TripletAssignment.Status.OPEN,
                                                          created_at__gte=cutoff)


def triplet_taken(*, triplet_id: int) -> int:
    """How many labelers answered the triplet or hold it now."""
    return TripletAssignment.objects.filter(_taken_filter(), triplet_id=triplet_id).count()


def triplets_waiting(*, criterion: SimilarityCriterion, focus: LabelingFocus | None = None) -> QuerySet[Triplet]:
    """Non-gold triplets that still want labelers (within ``focus`` when given), in serving order (highest
    priority first).

    A triplet is taken by each answered assignment and by each open one younger
    than ``LABELING_ASSIGNMENT_SECONDS``.
    """
    taken = (TripletAssignment.objects.filter(triplet=OuterRef("pk")).filter(_taken_filter())
             .order_by().values("triplet").annotate(n=Count("pk")).values("n"))
    triplets = (Triplet.objects.filter(criterion=criterion, gold_answer="", complete=False)
                .annotate(taken=Coalesce(Subquery(taken, output_field=IntegerField()), 0))
                .filter(taken__lt=F("judgments_wanted")))
    return triplets.filter(focus_triplets_q(focus)).order_by("-priority", "pk")


# --- focuses -----------------------------------------------------------------------------------------


def focus_images(focus: LabelingFocus | None) -> QuerySet[Image]:
    """The images of a focus (the library's for None)."""
    return Image.objects.filter(focus_image_q(focus))


def focus_image_q(focus: LabelingFocus | None, path: str = "") -> Q:
    """The condition that the image at ``path`` (a relation to an image, e.g. "query"; "" for an image
    itself) is in the focus."""
    if focus is None:
        return Q()
    at = f"{path}__" if path else ""
    if focus.kind == LabelingFocus.Kind.COLLECTION:
        return Q(**{f"{at}collection_id": focus.collection_id})
    if focus.kind == LabelingFocus.Kind.LABEL:
        return Q(**{f"{at}label": focus.label})
    return Q(**{f"{path or 'pk'}__in": FocusImage.objects.filter(focus_id=focus.pk).values("image_id")})


def focus_triplets_q(focus: LabelingFocus | None) -> Q:
    """Triplets whose three images are in the focus: what its labelers are given."""
    return focus_image_q(focus, "query") & focus_image_q(focus, "candidate_a") & focus_image_q(focus, "candidate_b")


def focus_search_filters(focus: LabelingFocus | None) -> dict:
    """``ranking.selectors.nearest_images``'s filters that keep its answers within the focus."""
    if focus is None:
        return {}
    if focus.kind == LabelingFocus.Kind.COLLECTION:
        return {"collection_id": focus.collection_id}
    if focus.kind == LabelingFocus.Kind.LABEL:
        return {"label": focus.label}
    return {"focus_id": focus.pk}


def focuses_offered(*, criterion: SimilarityCriterion) -> list[LabelingFocus]:
    """The criterion's focuses labelers may choose (not archived), each with ``image_count``."""
    focuses = list(LabelingFocus.objects.filter(criterion=criterion, archived=False).select_related("collection"))
    for focus in focuses:
        focus.image_count = focus_images(focus).count()
    return focuses


NO_SUCH_FOCUS = "This focus is not offered for this criterion (it may have been archived)."


def focus_for_labeler(*, criterion: SimilarityCriterion, focus_id: int | None) -> LabelingFocus | None:
    """The focus a labeler asked for (None: the whole library); LookupError when it is not offered."""
    if focus_id is None:
        return None
    focus = LabelingFocus.objects.filter(pk=focus_id, criterion=criterion, archived=False).first()
    if focus is None:
        raise LookupError(NO_SUCH_FOCUS)
    return focus


def criteria_for_labeler(*, user) -> QuerySet[SimilarityCriterion]:
    """The criteria the user may label: those listing them, and those listing nobody."""
    if not user.has_perm("labeling.label"):
        return SimilarityCriterion.objects.none()
    return (SimilarityCriterion.objects.annotate(n_labelers=Count("labelers"))
            .filter(Q(n_labelers=0) | Q(labelers=user)).distinct().order_by("pk"))


# an answer to a gold triplet given after it became gold
_GOLD_TEST = ~Q(triplet__gold_answer="") & Q(created_at__gt=F("triplet__gold_made_at"))


@dataclass(frozen=True)
class LabelerStats:
    today: int
    total: int
    answers_per_minute: float | None  # at the labeler's recent pace
    gold_answered: int
    gold_correct: int


def labeler_stats(*, user, criterion: SimilarityCriterion | None = None) -> LabelerStats:
    """The labeler's own figures, as the labeling page shows them."""
    judgments = TripletJudgment.objects.filter(user=user, source=TripletJudgment.Source.LABELING)
    if criterion is not None:
        judgments = judgments.filter(triplet__criterion=criterion)
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    counts = judgments.aggregate(
        total=Count("pk"), today=Count("pk", filter=Q(created_at__gte=start_of_day)),
        gold_answered=Count("pk", filter=_GOLD_TEST),
        gold_correct=Count("pk", filter=_GOLD_TEST & Q(answer=F("triplet__gold_answer"))),
    )
    # pace: the last 20 answers' own timings, so a coffee break does not drag it down for the day
    recent = [s for s in judgments.order_by("-created_at").values_list("seconds", flat=True)[:20] if s]
    per_minute = round(60 * len(recent) / sum(recent), 1) if recent else None
    return LabelerStats(today=counts["today"], total=counts["total"], answers_per_minute=per_minute,
                        gold_answered=counts["gold_answered"], gold_correct=counts["gold_correct"])


@dataclass(frozen=True)
class LabelerQuality:
    user_id: int
    username: str
    answers: int
    gold_answered: int
    gold_accuracy: float | None  # share right on gold triplets
    agreement: float | None  # share of their A/B answers that match the others' majority on shared triplets


def labeler_quality(*, criterion: SimilarityCriterion) -> list[LabelerQuality]:
    """Per labeler: gold accuracy and agreement with the other labelers of the same triplets."""
    rows = (TripletJudgment.objects.filter(triplet__criterion=criterion, user__isnull=False)
            .annotate(is_gold_test=ExpressionWrapper(_GOLD_TEST, output_field=BooleanField()))
            .values_list("user_id", "user__username", "triplet_id", "answer", "triplet__gold_answer", "is_gold_test"))
    by_triplet: dict[int, list[tuple[int, str]]] = defaultdict(list)
    names, answers, gold_answered, gold_right = {}, Counter(), Counter(), Counter()
    for user_id, username, triplet_id, answer, gold, is_gold_test in rows:
        names[user_id] = username
        answers[user_id] += 1
        by_triplet[triplet_id].append((user_id, answer))
        if is_gold_test:
            gold_answered[user_id] += 1
            gold_right[user_id] += answer == gold
    agreed, compared = Counter(), Counter()
    for votes in by_triplet.values():
        for user_id, answer in votes:
            others = Counter(a for u, a in votes if u != user_id and a != TripletJudgment.Answer.UNSURE)
            if answer == TripletJudgment.Answer.UNSURE or not others:
                continue
            (top, n), *rest = others.most_common()
            if rest and rest[0][1] == n:
                continue  # the others are split: nothing to agree with
            compared[user_id] += 1
            agreed[user_id] += answer == top
    return [
        LabelerQuality(user_id=u, username=names[u], answers=answers[u], gold_answered=gold_answered[u],
                       gold_accuracy=gold_right[u] / gold_answered[u] if gold_answered[u] else None,
                       agreement=agreed[u] / compared[u] if compared[u] else None)
        for u in sorted(names, key=lambda u: names[u])
    ]


def triplet_agreement(*, triplet: Triplet) -> float | None:
    """Share of the triplet's A/B answers that side with its majority (None without answers)."""
    votes = Counter(triplet.judgments.exclude(answer=TripletJudgment.Answer.UNSURE).values_list("answer", flat=True))
    total = sum(votes.values())
    return max(votes.values()) / total if total else None


def excluded_labelers(*, criterion: SimilarityCriterion, min_gold_accuracy: float | None = None) -> set[int]:
    """Labelers whose gold accuracy is below the threshold (``LABELING_MIN_GOLD_ACCURACY``),
    once they answered ``LABELING_MIN_GOLD_ANSWERS`` gold triplets."""
    threshold = settings.LABELING_MIN_GOLD_ACCURACY if min_gold_accuracy is None else min_gold_accuracy
    if not threshold:
        return set()
    return {q.user_id for q in labeler_quality(criterion=criterion)
            if q.gold_answered and q.gold_answered >= settings.LABELING_MIN_GOLD_ANSWERS
            and q.gold_accuracy < threshold}


def training_triplets(*, criterion: SimilarityCriterion, min_gold_accuracy: float | None = None,
                      sources: list[str] | None = None) -> list[tuple[int, int, int]]:
    """The aggregate of the criterion's judgments as (query, more similar, less similar) image ids.

    A gold triplet counts with its known answer. Otherwise: majority vote over its
    "A" and "B" answers; "can't tell" answers count for neither side, and ties
    (including triplets answered only "can't tell") are left out. Answers of
    labelers below the gold-accuracy threshold (``excluded_labelers``) are not
    counted, nor, with ``sources``, judgments from other sources. Ordered by triplet id, so the same judgments always give the same list.
    """
    excluded = excluded_labelers(criterion=criterion, min_gold_accuracy=min_gold_accuracy)
    counted = ~Q(judgments__user__in=excluded) if excluded else Q()
    if sources:
        counted &= Q(judgments__source__in=sources)
    rows = (
        Triplet.objects.filter(criterion=criterion)
        .annotate(
            votes_a=Count("judgments", filter=Q(judgments__answer=TripletJudgment.Answer.A) & counted),
            votes_b=Count("judgments", filter=Q(judgments__answer=TripletJudgment.Answer.B) & counted),
        )
        .filter(~Q(gold_answer="") | ~Q(votes_a=0, votes_b=0))
        .order_by("pk")
        .values_list("query_id", "candidate_a_id", "candidate_b_id", "votes_a", "votes_b", "gold_answer")
    )
    out = []
    for query, a, b, votes_a, votes_b, gold in rows:
        if gold == "a" or (not gold and votes_a > votes_b):
            out.append((query, a, b))
        elif gold == "b" or (not gold and votes_b > votes_a):
            out.append((query, b, a))
    return out


NOT_A_LABELER = "You may not label this criterion."


def criterion_for_labeler(*, user, criterion_id: int | None = None) -> SimilarityCriterion:
    """The criterion the user labels: the one asked for, or their first; PermissionError if they may not."""
    allowed = criteria_for_labeler(user=user)
    criterion = allowed.filter(pk=criterion_id).first() if criterion_id is not None else allowed.first()
    if criterion is None:
        raise PermissionError(NOT_A_LABELER)
    return criterion


def search_feedback_marks(*, user, criterion: SimilarityCriterion, query_id: int) -> dict[int, bool]:
    """The analyst's marks on the results of one query: result image id -> relevant."""
    from labeling.models import SearchFeedback

    return dict(SearchFeedback.objects.filter(criterion=criterion, user=user, query_id=query_id)
                .values_list("result_id", "relevant"))


def judgments_per_day(*, criterion: SimilarityCriterion, days: int = 30) -> list[dict]:
    """Judgments of the last ``days`` days per day and source, oldest first: {day, source, count}."""
    since = timezone.now() - timedelta(days=days)
    return list(TripletJudgment.objects.filter(triplet__criterion=criterion, created_at__gte=since)
                .annotate(day=TruncDate("created_at")).values("day", "source")
                .annotate(count=Count("id")).order_by("day", "source"))


def judgments_per_source_and_labeler(*, criterion: SimilarityCriterion) -> dict:
    """All-time judgment counts by source and by labeler (top 50), for the dashboard."""
    judgments = TripletJudgment.objects.filter(triplet__criterion=criterion)
    return {
        "by_source": dict(judgments.values_list("source").annotate(n=Count("id")).order_by("source")),
        "by_labeler": list(judgments.exclude(user=None).values("user__username").annotate(n=Count("id"))
                           .order_by("-n")[:50]),
    }


@dataclass
class FocusRow:
    focus: LabelingFocus
    images: int
    judged_triplets: int  # judged triplets whose three images are in the focus
    held_out_triplets: int  # of those, the ones whose query is held out of training (split_by_query)
    accuracy: dict[int, float | None]  # version id -> its held-out triplet accuracy within the focus


def focus_rows(*, criterion: SimilarityCriterion, triplets: list[tuple[int, int, int]] | None = None,
               versions: list | None = None) -> list[FocusRow]:
    """Per focus of the criterion: its judged triplets and each version's held-out accuracy on those within
    it, so a team sees whether the part of the library it works on improves. The versions are the
    criterion's embedded ones, newest four, unless given; the held-out triplets are those the dashboard's
    version table scores (the same split by query)."""
    from ranking.models import ModelVersion
    from ranking.selectors import triplet_outcomes
    from ranking.services.evaluation import split_by_query
    from ranking.services.hyperparameters import default_hyperparameters

    triplets = training_triplets(criterion=criterion) if triplets is None else triplets
    if versions is None:
        versions = list(ModelVersion.objects.filter(criterion=criterion, status__in=ModelVersion.EMBEDDED_STATUSES)
                        .order_by("-pk")[:4])
    hp = default_hyperparameters(ModelVersion.Kind.RANKING)
    _, held_out = split_by_query(triplets, hp["val_fraction"], hp["seed"])
    judged_images = list({i for t in triplets for i in t})
    rows = []
    for focus in LabelingFocus.objects.filter(criterion=criterion).select_related("collection").order_by("archived", "name"):
        members = set(focus_images(focus).filter(pk__in=judged_images).values_list("pk", flat=True))
        within = [t for t in held_out if all(i in members for i in t)]
        accuracy = {}
        for version in versions:
            outcomes = triplet_outcomes(version=version, triplets=within) if within else None
            accuracy[version.pk] = None if outcomes is None else float(outcomes.mean())
        rows.append(FocusRow(focus=focus, images=focus_images(focus).count(),
                             judged_triplets=sum(all(i in members for i in t) for t in triplets),
                             held_out_triplets=len(within), accuracy=accuracy))
    return rows
