"""Writes: choosing candidate triplets and recording judgments."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from django.db import transaction

from imagesearch.models import Image
from labeling.models import Triplet, TripletJudgment
from ranking.models import ModelVersion, SimilarityCriterion

INVALID_ANSWER = "The answer must be 'a', 'b' or 'unsure'."


@dataclass(frozen=True)
class CandidatePolicy:
    """How candidates are drawn from a query's neighbourhood under the active model.

    One candidate comes from the nearest ranks, the other from farther ranks of
    the same neighbourhood or, with probability ``far_share``, from anywhere in
    the library. Two candidates at different ranks make a question the judge can
    usually answer (two near ones are often equally similar); the far ones keep
    the model honest about the coarse structure it already learned.
    """

    near_ranks: tuple[int, int] = (1, 10)
    mid_ranks: tuple[int, int] = (11, 100)
    far_share: float = 0.5


def triplet_candidates(
    *,
    version: ModelVersion,
    query_ids: Iterable[int],
    policy: CandidatePolicy = CandidatePolicy(),
    seed: int | None = None,
    exclude_ids: Collection[int] = frozenset(),
) -> list[tuple[int, int, int, dict]]:
    """Choose (query, near candidate, other candidate, origin) for each query id (repeat an id for more).

    Candidates come from the query's neighbours under ``version`` (see
    ``CandidatePolicy``); images in ``exclude_ids`` are never candidates.
    Nothing is stored: ``triplets_generate`` does that.
    """
    from ranking.selectors import image_search

    rng = random.Random(seed)
    library: list[int] = []  # for far candidates; read once, when the first one is drawn
    neighbours: dict[int, list[int]] = {}
    chosen = []
    for query_id in query_ids:
        if query_id not in neighbours:
            # with exclusions, ask for more so that enough neighbours remain
            k = policy.mid_ranks[1] * (2 if exclude_ids else 1)
            # Ranks are the point here, so search wide: with a narrow beam the approximate
            # lists (and so the triplets) also vary with each index build's random levels.
            hits = image_search(version=version, image_id=query_id, k=k, ef_search=4 * k)
            neighbours[query_id] = [h.image.pk for h in hits if h.image.pk not in exclude_ids][: policy.mid_ranks[1]]
        ranked = neighbours[query_id]
        if len(ranked) < 2:
            continue
        near_rank = rng.randint(policy.near_ranks[0], min(policy.near_ranks[1], len(ranked) - 1))
        near = ranked[near_rank - 1]
        if rng.random() < policy.far_share or len(ranked) <= policy.mid_ranks[0]:
            if not library:
                library = [i for i in Image.objects.order_by("pk").values_list("pk", flat=True)
                           if i not in exclude_ids]
            other, other_rank = rng.choice(library), None
            if other in (query_id, near):
                continue
        else:
            other_rank = rng.randint(policy.mid_ranks[0], len(ranked))
            other = ranked[other_rank - 1]
        chosen.append((query_id, near, other, {"strategy": "neighbours", "version": version.pk,
                                                "ranks": [near_rank, other_rank]}))
    return chosen


def triplets_generate(
    *,
    criterion: SimilarityCriterion,
    version: ModelVersion,
    query_ids: Iterable[int],
    policy: CandidatePolicy = CandidatePolicy(),
    seed: int | None = None,
    exclude_ids: Collection[int] = frozenset(),
) -> list[Triplet]:
    """Store one candidate triplet per query id (see ``triplet_candidates``); an existing one is reused."""
    return [
        triplet_get_or_create(criterion=criterion, query_id=q, candidate_ids=(a, b), origin=origin)
        for q, a, b, origin in triplet_candidates(version=version, query_ids=query_ids, policy=policy, seed=seed,
                                                  exclude_ids=exclude_ids)
    ]


def triplet_get_or_create(
    *, criterion: SimilarityCriterion, query_id: int, candidate_ids: tuple[int, int], origin: dict | None = None
) -> Triplet:
    a, b = sorted(candidate_ids)
    if query_id in (a, b) or a == b:
        raise ValueError("a triplet needs three different images")
    triplet, _ = Triplet.objects.get_or_create(
        criterion=criterion, query_id=query_id, candidate_a_id=a, candidate_b_id=b,
        defaults={"origin": origin or {}},
    )
    return triplet


def judgment_record(
    *,
    triplet: Triplet,
    answer: str,
    user=None,
    source: str = TripletJudgment.Source.LABELING,
    seconds: float | None = None,
) -> TripletJudgment:
    """Store one answer to "which of A and B is more similar to the query?"."""
    if answer not in TripletJudgment.Answer.values:
        raise ValueError(INVALID_ANSWER)
    with transaction.atomic():
        judgment = TripletJudgment(triplet=triplet, answer=answer, user=user, source=source, seconds=seconds)
        judgment.full_clean()
        judgment.save()
    return judgment
