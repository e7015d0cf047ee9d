"""The search benchmark's own arithmetic: exact neighbours, recall, and the equal-recall comparison."""

from __future__ import annotations

import numpy as np

from bench.search import at_equal_recall, clustered_vectors, exact_top, pgvector_vs_faiss_ratio, recall


def test_clustered_vectors_are_unit_length_and_queries_share_the_clusters():
    rng = np.random.default_rng(0)
    vectors, centres, bases = clustered_vectors(500, 16, 5, 3, rng)
    queries, _, _ = clustered_vectors(10, 16, 5, 3, rng, centres, bases)
    assert vectors.shape == (500, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # every query's nearest library vector is far closer than a random one
    scores = queries @ vectors.T
    assert (scores.max(axis=1) > np.median(scores, axis=1) + 0.2).all()


def test_exact_top_orders_by_cosine_and_recall_counts_overlap():
    vectors = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float32)
    top = exact_top(vectors, np.array([[1, 0]], dtype=np.float32), k=2)
    assert top.tolist() == [[0, 1]]
    assert recall([[0, 2]], top) == 0.5 and recall([[1, 0]], top) == 1.0


def test_equal_recall_takes_the_cheapest_faiss_point_reaching_pgvectors_recall():
    pg = [{"ef_search": 40, "recall_at_10": 0.9, "p50_ms": 2.0}, {"ef_search": 100, "recall_at_10": 0.99, "p50_ms": 4.0}]
    faiss = [{"ef_search": 16, "recall_at_10": 0.85, "p50_ms": 0.1}, {"ef_search": 32, "recall_at_10": 0.95, "p50_ms": 0.2},
             {"ef_search": 64, "recall_at_10": 0.995, "p50_ms": 0.5}]
    rows = at_equal_recall(pg, faiss)
    assert [(r["faiss_ef_search"], r["pgvector_over_faiss_p50"]) for r in rows] == [(32, 10.0), (64, 8.0)]
    assert at_equal_recall([{"ef_search": 9, "recall_at_10": 1.0, "p50_ms": 1}], faiss)[0]["faiss_ef_search"] is None


def test_the_ratio_compares_each_engine_at_its_lowest_setting_reaching_the_recall():
    pg = [{"ef_search": 100, "recall_at_10": 0.99, "p50_ms": 4.0}, {"ef_search": 40, "recall_at_10": 0.96, "p50_ms": 3.0},
          {"ef_search": 20, "recall_at_10": 0.90, "p50_ms": 1.0}]
    faiss = [{"ef_search": 16, "recall_at_10": 0.85, "p50_ms": 0.1}, {"ef_search": 32, "recall_at_10": 0.95, "p50_ms": 0.2},
             {"ef_search": 64, "recall_at_10": 0.995, "p50_ms": 0.5}]
    figure = pgvector_vs_faiss_ratio(pg, faiss)
    assert figure["pgvector"]["ef_search"] == 40 and figure["faiss"]["ef_search"] == 32 and figure["ratio"] == 15.0
    assert pgvector_vs_faiss_ratio(pg[2:], faiss)["ratio"] is None  # pgvector never reached 0.95
