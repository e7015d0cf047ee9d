"""Metrics of embeddings against judged triplets (rows of indices: query, positive, negative).

Nothing here imports Django.
"""

from __future__ import annotations

import torch


@torch.inference_mode()
def triplet_accuracy(embeddings: torch.Tensor, triplets: torch.Tensor) -> float:
    """Share of triplets whose positive is nearer the query than the negative ("similarity precision")."""
    if len(triplets) == 0:
        return float("nan")
    q, p, n = embeddings[triplets[:, 0]], embeddings[triplets[:, 1]], embeddings[triplets[:, 2]]
    d_pos = (q - p).pow(2).sum(1)
    d_neg = (q - n).pow(2).sum(1)
    return (d_pos < d_neg).float().mean().item()


@torch.inference_mode()
def judged_precision_at_k(embeddings: torch.Tensor, triplets: torch.Tensor, k: int = 10) -> float:
    """P@k over judged images only ("condensed lists"), averaged over the triplets' queries.

    Per query, the candidates judged more similar in its triplets are relevant and
    those judged less similar (and never more similar) are not; they are ranked by
    cosine similarity to the query, and the share of relevant ones among the first
    ``min(k, judged)`` is its precision. Queries without both kinds are left out.
    """
    by_query: dict[int, tuple[set, set]] = {}
    for q, p, n in triplets.tolist():
        relevant, other = by_query.setdefault(q, (set(), set()))
        relevant.add(p)
        other.add(n)
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    scores = []
    for q, (relevant, other) in by_query.items():
        other = other - relevant
        if not relevant or not other:
            continue
        candidates = torch.tensor(sorted(relevant | other))
        order = candidates[(unit[candidates] @ unit[q]).argsort(descending=True)].tolist()
        top = order[: min(k, len(order))]
        scores.append(sum(c in relevant for c in top) / len(top))
    return sum(scores) / len(scores) if scores else float("nan")
