"""Choosing candidate triplets and keeping the labeling queue filled."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min

from labeling.models import LabelingFocus, Triplet
from labeling.selectors import focus_images, focus_search_filters
from ranking.models import ModelVersion, SimilarityCriterion


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
    focus: LabelingFocus | None = None,
) -> list[tuple[int, int, int, dict]]:
    """Choose (query, near candidate, other candidate, origin) for each query id (repeat an id for more).

    Candidates come from the query's neighbours under ``version`` (see
    ``CandidatePolicy``); images in ``exclude_ids`` are never candidates.
    Nothing is stored: ``triplets_generate`` does that.
    """
    from ranking.selectors import nearest_images

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
            hits = nearest_images(version=version, image_id=query_id, k=k, ef_search=4 * k,
                                  **focus_search_filters(focus))
            neighbours[query_id] = [h.image.pk for h in hits if h.image.pk not in exclude_ids][: policy.mid_ranks[1]]
        ranked = neighbours[query_id]
        if len(ranked) < 2:
            continue
        near_rank = rng.randint(policy.near_ranks[0], min(policy.near_ranks[1], len(ranked) - 1))
        near = ranked[near_rank - 1]
        if rng.random() < policy.far_share or len(ranked) <= policy.mid_ranks[0]:
            if not library:
                library = _library_ids(focus, exclude_ids)
            other, other_rank = rng.choice(library), None
            if other in (query_id, near):
                continue
        else:
            other_rank = rng.randint(policy.mid_ranks[0], len(ranked))
            other = ranked[other_rank - 1]
        chosen.append((query_id, near, other, {"strategy": "neighbours", "version": version.pk,
                                                "ranks": [near_rank, other_rank]}))
    return chosen


def triplet_candidates_active(
    *,
    version: ModelVersion,
    query_ids: Iterable[int],
    count: int,
    policy: CandidatePolicy = CandidatePolicy(),
    seed: int | None = None,
    exclude_ids: Collection[int] = frozenset(),
    explore_share: float = 0.2,
    far_per_query: int = 20,
    focus: LabelingFocus | None = None,
) -> list[tuple[int, int, int, dict]]:
    """Active selection: the ``count`` triplets, one per query, the model is least sure about.

    For each query, every pair among its ``policy.mid_ranks[1]`` nearest neighbours and
    ``far_per_query`` random library images is scored by ``informative_pair``; the
    best-scoring queries win. A share ``explore_share`` of the batch is drawn by the
    plain neighbourhood policy instead, so that the model's blind spots (pairs it is
    sure about, wrongly) still get asked. ``origin["score"]`` holds the score.
    """
    from ranking.selectors import embedding_vectors, nearest_images

    rng = random.Random(seed)
    queries = list(dict.fromkeys(query_ids))
    if not queries or count <= 0:
        return []
    library = _library_ids(focus, exclude_ids)
    k = policy.mid_ranks[1]
    pools: dict[int, list[int]] = {}
    for query_id in queries:
        hits = nearest_images(version=version, image_id=query_id, k=k * (2 if exclude_ids else 1), ef_search=4 * k,
                              **focus_search_filters(focus))
        near = [h.image.pk for h in hits if h.image.pk not in exclude_ids][:k]
        far = [i for i in rng.sample(library, min(far_per_query, len(library))) if i != query_id and i not in near]
        pools[query_id] = near + far
    vectors = embedding_vectors(version=version, image_ids=list({i for q in queries for i in (q, *pools[q])}))
    scored = []
    for query_id in queries:
        pool = [i for i in pools[query_id] if i in vectors]
        if query_id not in vectors or len(pool) < 2:
            continue
        i, j, score = informative_pair(vectors[query_id], np.stack([vectors[c] for c in pool]))
        near_count = len(pools[query_id]) - far_per_query
        ranks = [n + 1 if n < near_count else None for n in (i, j)]
        scored.append((score, query_id, pool[i], pool[j], ranks))
    scored.sort(key=lambda row: (-row[0], row[1]))
    n_active = min(len(scored), round(count * (1 - explore_share)))
    chosen = [(q, a, b, {"strategy": "active", "version": version.pk, "ranks": ranks, "score": round(score, 5)})
              for score, q, a, b, ranks in scored[:n_active]]
    left = [row[1] for row in scored[n_active:]]
    rng.shuffle(left)
    chosen += triplet_candidates(version=version, query_ids=left[: count - len(chosen)], policy=policy,
                                 seed=rng.randrange(2**31), exclude_ids=exclude_ids, focus=focus)
    return chosen


def _library_ids(focus: LabelingFocus | None, exclude_ids: Collection[int]) -> list[int]:
    images = focus_images(focus)
    return [i for i in images.order_by("pk").values_list("pk", flat=True) if i not in exclude_ids]


def informative_pair(query: np.ndarray, candidates: np.ndarray) -> tuple[int, int, float]:
    """The pair (i, j) of candidate rows whose answer the embedding is least sure of, and its score.

    Score: (d(a, b) − |d(q, a) − d(q, b)|) / (d(q, a) + d(q, b)) on unit vectors,
    from 0 to 1 (triangle inequality), and 1 exactly when the query lies midway
    between the two candidates. Equal distances alone (the model's coin toss) pick
    mostly pairs of near-duplicates, or of two unrelated far images, that a
    labeler can only answer "can't tell" to; a query *between* two candidates
    unlike each other asks which of two kinds of image it belongs with.
    ``python -m bench.triplet_selection`` (Fashion-MNIST, PCA embedding): 31% of these
    pairs were answerable and the embedding ranked 44% of those wrongly (0.14
    corrections per judgment), against 49% and 10% (0.05) for the neighbourhood policy.
    """
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    q, c = unit(query.astype(np.float64)), unit(candidates.astype(np.float64))
    to_query = np.linalg.norm(c - q, axis=1)
    between = np.sqrt(np.maximum(2.0 - 2.0 * (c @ c.T), 0.0))
    spread = to_query[:, None] + to_query[None, :]
    score = (between - np.abs(to_query[:, None] - to_query[None, :])) / np.maximum(spread, 1e-12)
    score[np.tril_indices(len(c))] = -np.inf
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(i), int(j), float(score[i, j])


def triplets_generate(
    *,
    criterion: SimilarityCriterion,
    version: ModelVersion,
    query_ids: Iterable[int],
    policy: CandidatePolicy = CandidatePolicy(),
    seed: int | None = None,
    exclude_ids: Collection[int] = frozenset(),
    selection: str = "random",
    count: int | None = None,
    focus: LabelingFocus | None = None,
) -> list[Triplet]:
    """Store candidate triplets; an existing one is reused.

    ``selection="random"``: one per query id by the neighbourhood policy
    (``triplet_candidates``), at most ``count``. ``"active"``: the ``count`` most informative of the
    query ids (``triplet_candidates_active``), served first.
    """
    if selection == "active":
        query_ids = list(query_ids)
        chosen = triplet_candidates_active(version=version, query_ids=query_ids, count=count or len(query_ids),
                                           policy=policy, seed=seed, exclude_ids=exclude_ids,
                                           focus=focus)
    elif selection == "random":
        chosen = triplet_candidates(version=version, query_ids=query_ids, policy=policy, seed=seed,
                                    exclude_ids=exclude_ids, focus=focus)[:count]
    else:
        raise ValueError(f"unknown selection {selection!r}: 'random' or 'active'")
    scores = [origin["score"] for *_, origin in chosen if "score" in origin]
    # explorers interleave with the active ones instead of waiting behind all of them (scores are 0..1)
    middle = float(np.median(scores)) if scores else 0.0
    return [
        triplet_get_or_create(criterion=criterion, query_id=q, candidate_ids=(a, b), origin=origin,
                              priority=origin.get("score", middle))
        for q, a, b, origin in chosen
    ]


def triplets_random(*, criterion: SimilarityCriterion, focus: LabelingFocus | None, count: int,
                    seed: int | None = None) -> list[Triplet]:
    """Triplets of three random images, for a library without a model yet."""
    rng = random.Random(seed)
    triplets = []
    for _ in range(count):
        ids = random_image_ids(focus=focus, count=3, rng=rng)
        if len(ids) == 3:
            triplets.append(triplet_get_or_create(criterion=criterion, query_id=ids[0], candidate_ids=(ids[1], ids[2]),
                                                  origin={"strategy": "random"}))
    return triplets


def random_image_ids(*, focus: LabelingFocus | None, count: int, rng: random.Random,
                     embedded_by: ModelVersion | None = None) -> list[int]:
    """Up to ``count`` distinct random image ids of the focus (or the library), without reading the whole
    table (ids are dense enough).

    ``embedded_by``: only images that have an embedding under that version."""
    images = focus_images(focus)
    if embedded_by is not None:
        images = images.filter(embeddings__version=embedded_by)
    bounds = images.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        return []
    found: list[int] = []
    for _ in range(5):
        draws = {rng.randint(bounds["low"], bounds["high"]) for _ in range(2 * (count - len(found)) + 10)}
        found += sorted(set(images.filter(pk__in=draws).values_list("pk", flat=True)) - set(found))
        if len(found) >= count:
            break
    if len(found) < count:  # a sparse focus (a cluster, a label) among a large library: draw from it alone
        found += list(images.exclude(pk__in=found).order_by("?").values_list("pk", flat=True)[:count - len(found)])
    rng.shuffle(found)
    return found[:count]


def triplets_refill(*, criterion: SimilarityCriterion, focus: LabelingFocus | None = None,
                    target: int | None = None, seed: int | None = None, user=None, wait: bool = True) -> int:
    """Top the criterion's queue (of one focus, or the whole library) up to ``target`` unanswered triplets.

    Uses the active version with ``LABELING_SELECTION`` (the neighbourhood policy
    by default), or random triplets while there is no model. Returns how many were
    added. Concurrent refills of the same queue wait for each other instead of
    both adding a batch; with ``wait=False`` a refill already running means this
    one does nothing. With ``user``, only triplets that labeler may still be given count.
    """
    from labeling.selectors import triplets_waiting
    from ranking.selectors import NoActiveVersion, active_version

    target = settings.LABELING_QUEUE_TARGET if target is None else target
    with transaction.atomic():
        key = [REFILL_LOCK, (criterion.pk * 100_003 + (focus.pk if focus else 0)) % 2**31]
        with connection.cursor() as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", key)
            else:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", key)
                if not cursor.fetchone()[0]:
                    return 0
        waiting = triplets_waiting(criterion=criterion, focus=focus)
        if user is not None:
            waiting = waiting.exclude(assignments__user=user)
        before = waiting.count()
        rng = random.Random(seed)
        try:
            version = active_version(criterion=criterion)
        except NoActiveVersion:
            version = None
        # more rounds while they add something: draws can repeat a stored triplet or, in a small
        # focus, find too few neighbours; two fruitless rounds in a row mean the queue is as
        # full as the focus allows for now
        fruitless = 0
        for _ in range(10):
            count = waiting.count()
            if count >= target or fruitless >= 2:
                break
            missing = target - count
            if version is None:
                triplets_random(criterion=criterion, focus=focus, count=missing,
                                seed=rng.randrange(2**31))
            else:
                # three times the queries needed: active selection keeps the best, the policy the
                # first ones that yield a triplet (some find too few neighbours in a small focus)
                selection = settings.LABELING_SELECTION
                # only embedded queries: one imported a moment ago would be embedded here, in the refill
                # task (a 224 px forward each: a refill after a large import held a worker for minutes)
                queries = random_image_ids(focus=focus, rng=rng, count=missing * 3, embedded_by=version)
                triplets_generate(criterion=criterion, version=version, query_ids=queries, selection=selection,
                                  count=missing, seed=rng.randrange(2**31), focus=focus)
            fruitless = fruitless + 1 if waiting.count() == count else 0
        return waiting.count() - before


REFILL_LOCK = 0x7472  # advisory lock namespace of queue refills


def triplet_get_or_create(
    *, criterion: SimilarityCriterion, query_id: int, candidate_ids: tuple[int, int], origin: dict | None = None,
    priority: float = 0.0,
) -> Triplet:
    a, b = sorted(candidate_ids)
    if query_id in (a, b) or a == b:
        raise ValueError("a triplet needs three different images")
    triplet, _ = Triplet.objects.get_or_create(
        criterion=criterion, query_id=query_id, candidate_a_id=a, candidate_b_id=b,
        defaults={"origin": origin or {}, "priority": priority,
                  "judgments_wanted": settings.LABELING_JUDGMENTS_PER_TRIPLET},
    )
    return triplet
