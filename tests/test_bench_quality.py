"""The quality benchmark's simulated expert and metrics (the rest runs the app's own services)."""

from __future__ import annotations

import numpy as np

from bench.quality import expert_answer, precision_at_k, triplet_accuracy


def test_the_simulated_expert_picks_the_candidate_sharing_the_query_label_or_cannot_tell():
    assert expert_answer("coat", "coat", "bag") == "a"
    assert expert_answer("coat", "bag", "coat") == "b"
    assert expert_answer("coat", "coat", "coat") == "unsure"
    assert expert_answer("coat", "bag", "shirt") == "unsure"


def test_precision_at_k_counts_same_label_neighbours_and_skips_the_query():
    vectors = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9]], dtype=np.float32)
    labels = np.array(["x", "x", "y", "y", "y"])
    # query 0's two nearest others: 1 (x) and 2 (y); query 3's: 4 (y) and 2 (y)
    assert precision_at_k(vectors, labels, np.array([0, 3]), 2) == 0.75


def test_triplet_accuracy_is_the_share_with_the_positive_nearer():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    assert triplet_accuracy(vectors, np.array([[0, 1, 2], [0, 2, 1]])) == 0.5
