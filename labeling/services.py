"""Writes: choosing candidate triplets and recording judgments."""

from __future__ import annotations

import random
from collections.abc import Iterable
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


def triplets_generate(
    *,
    criterion: SimilarityCriterion,
    version: ModelVersion,
    query_ids: Iterable[int],
    policy: CandidatePolicy = CandidatePolicy(),
    seed: int | None = None,
) -> list[Triplet]:
    """One new candidate triplet per query id (repeat an id for more), from the version's neighbours.

    Returns the triplets created; a triplet that exists already is returned as it is.
    """
    from ranking.selectors import image_search

    rng = random.Random(seed)
    library = list(Image.objects.values_list("pk", flat=True))
    neighbours: dict[int, list[int]] = {}
    created: list[Triplet] = []
    for query_id in query_ids:
        if query_id not in neighbours:
            hits = image_search(version=version, image_id=query_id, k=policy.mid_ranks[1])
            neighbours[query_id] = [hit.image.pk for hit in hits]
        ranked = neighbours[query_id]
        if len(ranked) < 2:
            continue
        near_rank = rng.randint(policy.near_ranks[0], min(policy.near_ranks[1], len(ranked) - 1))
        near = ranked[near_rank - 1]
        if rng.random() < policy.far_share or len(ranked) <= policy.mid_ranks[0]:
            other, other_rank = rng.choice(library), None
            if other in (query_id, near):
                continue
        else:
            other_rank = rng.randint(policy.mid_ranks[0], len(ranked))
            other = ranked[other_rank - 1]
        origin = {"strategy": "neighbours", "version": version.pk, "ranks": [near_rank, other_rank]}
        created.append(triplet_get_or_create(criterion=criterion, query_id=query_id, candidate_ids=(near, other),
                                             origin=origin))
    return created


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
