"""The vectorised losses against explicit loops over tiny tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ranking.losses import batch_all_label_hinge, in_batch_negative_hinge, nt_xent, squared_distances, triplet_hinge


def _unit(n: int, d: int = 5, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def _d(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).sum())


def test_squared_distances_match_pairwise_loop():
    a, b = _unit(4), _unit(3, seed=1)
    d = squared_distances(a, b)
    for i in range(4):
        for j in range(3):
            assert abs(d[i, j].item() - _d(a[i], b[j])) < 1e-5


def test_triplet_hinge_matches_the_paper_formula_row_by_row():
    q, p, n = _unit(6), _unit(6, seed=1), _unit(6, seed=2)
    margin = 0.3
    expected = sum(max(0.0, margin + _d(q[i], p[i]) - _d(q[i], n[i])) for i in range(6)) / 6
    assert abs(triplet_hinge(q, p, n, margin).item() - expected) < 1e-5


def test_triplet_hinge_is_zero_when_every_negative_is_far_enough():
    q = torch.tensor([[1.0, 0.0]])
    assert triplet_hinge(q, q.clone(), torch.tensor([[-1.0, 0.0]]), margin=0.5).item() == 0.0


def test_in_batch_negative_hinge_averages_the_active_terms():
    q, p, cand = _unit(3), _unit(3, seed=1), _unit(5, seed=2)
    invalid = torch.zeros(3, 5, dtype=torch.bool)
    invalid[0, 1] = invalid[2, 4] = True
    margin = 0.5
    terms = [
        margin + _d(q[i], p[i]) - _d(q[i], cand[j])
        for i in range(3) for j in range(5) if not invalid[i, j]
    ]
    active = [t for t in terms if t > 0]
    expected = sum(active) / len(active)
    assert abs(in_batch_negative_hinge(q, p, cand, invalid, margin).item() - expected) < 1e-5


def test_batch_all_label_hinge_matches_a_loop_over_valid_triplets():
    emb, labels = _unit(6), torch.tensor([0, 0, 1, 1, 2, 0])
    margin = 0.4
    active = []
    for a in range(6):
        for p in range(6):
            for n in range(6):
                if a != p and labels[a] == labels[p] and labels[a] != labels[n]:
                    t = margin + _d(emb[a], emb[p]) - _d(emb[a], emb[n])
                    if t > 0:
                        active.append(t)
    expected = sum(active) / len(active)
    assert abs(batch_all_label_hinge(emb, labels, margin).item() - expected) < 1e-5


def test_nt_xent_prefers_matching_views():
    z = _unit(8, d=16)
    matching = nt_xent(z, z + 0.01 * _unit(8, d=16, seed=3)).item()
    unrelated = nt_xent(z, _unit(8, d=16, seed=4)).item()
    assert matching < unrelated
