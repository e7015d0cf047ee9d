"""Which triplets are worth a labeler's time: answerable share and model-wrong share per selection rule.

    python -m bench.triplet_selection [--n 10000] [--queries 600] [--seed 0]

Fast and torch-free: Fashion-MNIST (``apt-get install dataset-fashion-mnist``)
embedded by PCA to 64 dimensions stands in for a weak first model. For random
queries, each rule picks one pair of candidates among the query's 100 nearest
neighbours and 20 random images; the simulated expert (the candidate sharing the
query's label; "can't tell" when both or neither do) answers it. Reported per
rule: the share of answerable triplets, and among those the share the embedding
ranks wrongly — a triplet the model already ranks right teaches it little. Rules:
the labeling app's neighbourhood policy (random selection), its
``informative_pair`` score (active selection), and plain distance equality
(the classic "uncertainty" rule) for comparison.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

DATASET = Path("/usr/share/datasets/fashion-mnist")


def load(n: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.frombuffer(gzip.open(DATASET / "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    labels = np.frombuffer(gzip.open(DATASET / "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return images.reshape(-1, 784)[:n].astype(np.float32) / 255, labels[:n]


def pca_embedding(x: np.ndarray, dim: int = 64) -> np.ndarray:
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x[:3000], full_matrices=False)
    e = x @ vt[:dim].T
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from labeling.services.triplets import informative_pair  # numpy only; imports Django models

    x, y = load(args.n)
    e = pca_embedding(x)
    rng = np.random.default_rng(args.seed)
    queries = rng.choice(args.n, args.queries, replace=False)

    def policy(q, pool, to_query):
        near = int(rng.integers(0, 10))
        other = int(rng.integers(10, 100)) if rng.random() >= 0.5 else int(rng.integers(100, len(pool)))
        return near, other

    def active(q, pool, to_query):
        i, j, _ = informative_pair(e[q], e[pool])
        return i, j

    def equal_distance(q, pool, to_query):
        gap = np.abs(to_query[:, None] - to_query[None, :])
        gap[np.tril_indices(len(pool))] = np.inf
        i, j = np.unravel_index(int(np.argmin(gap)), gap.shape)
        return int(i), int(j)

    results = {}
    for name, rule in (("neighbourhood policy (random selection)", policy),
                       ("informative_pair (active selection)", active),
                       ("equal distances only", equal_distance)):
        answerable = wrong = 0
        for q in queries:
            sims = e[q] @ e.T
            sims[q] = -np.inf
            near = np.argsort(-sims)[:100]
            far = rng.choice(args.n, 20, replace=False)
            pool = np.array([i for i in dict.fromkeys([*near, *far]) if i != q])
            to_query = np.linalg.norm(e[pool] - e[q], axis=1)
            i, j = rule(q, pool, to_query)
            same_i, same_j = y[pool[i]] == y[q], y[pool[j]] == y[q]
            if same_i != same_j:
                answerable += 1
                wrong += (to_query[i] < to_query[j]) != same_i
        results[name] = {"answerable": round(answerable / len(queries), 3),
                         "model_wrong_of_answerable": round(wrong / max(answerable, 1), 3),
                         "model_wrong_per_judgment": round(wrong / len(queries), 3)}
        print(f"{name:42s} answerable {results[name]['answerable']:.2f}  "
              f"model wrong on {results[name]['model_wrong_of_answerable']:.2f} of those  "
              f"= {results[name]['model_wrong_per_judgment']:.2f} per judgment")
    summary = {"images": args.n, "queries": args.queries, "seed": args.seed, "rules": results}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    django.setup()
    from imagesearch.embedded_db import embedded_postgres_for_this_process

    embedded_postgres_for_this_process()  # without DATABASE_URL: the embedded server, as manage.py starts it
    main()
