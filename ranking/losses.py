"""Losses on L2-normalised embeddings. D is the squared Euclidean distance, as in Wang et al."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All pairwise squared Euclidean distances between the rows of ``a`` and ``b``."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0)


def triplet_hinge(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of max(0, g + D(q, p) − D(q, n)) over the rows of a batch of triplets."""
    d_pos = (q - p).pow(2).sum(1)
    d_neg = (q - n).pow(2).sum(1)
    return F.relu(margin + d_pos - d_neg).mean()


def in_batch_negative_hinge(
    q: torch.Tensor,
    p: torch.Tensor,
    candidates: torch.Tensor,
    invalid: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Hinge loss of each (q_i, p_i) pair against every valid candidate of the batch.

    ``candidates`` are embeddings of all the batch's images; ``invalid[i, j]`` is
    True where candidate j may not serve as a negative of row i (it is q_i or p_i,
    or known to be as similar). "Batch-all": the mean over the terms that are
    still active (positive), so easy negatives do not dilute the gradient as
    training progresses, while no single hardest negative (often a label error
    or a near-duplicate) dominates it.
    """
    d_pos = (q - p).pow(2).sum(1, keepdim=True)
    d_neg = squared_distances(q, candidates)
    losses = F.relu(margin + d_pos - d_neg).masked_fill(invalid, 0.0)
    active = (losses > 1e-12).sum()
    return losses.sum() / active.clamp_min(1)


def batch_all_label_hinge(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-all triplet loss from class labels: every (anchor, positive, negative) of the batch.

    Used for the all-labels upper bound of the quality benchmark.
    """
    d = squared_distances(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    # losses[a, p, n] = margin + d[a, p] - d[a, n], kept where (a, p) positive and (a, n) negative
    losses = F.relu(margin + d[:, :, None] - d[:, None, :])
    valid = pos[:, :, None] & neg[:, None, :]
    losses = losses * valid
    active = (losses > 1e-12).sum()
    return losses.sum() / active.clamp_min(1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's contrastive loss: each view must pick its twin among all 2N−1 other views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = (z @ z.T) / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def in_batch_softmax(
    q: torch.Tensor, p: torch.Tensor, candidates: torch.Tensor, invalid: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE form of the in-batch loss: p_i must be q_i's nearest among p_i and the valid candidates.

    Unlike the hinge, each anchor's push on its negatives is shared out by a
    softmax, so the few negatives that are in fact as similar as the positive
    (a same-class image in a batch) weigh less than the positive's pull.
    """
    pos = -(q - p).pow(2).sum(1, keepdim=True) / temperature
    neg = (-squared_distances(q, candidates) / temperature).masked_fill(invalid, float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
