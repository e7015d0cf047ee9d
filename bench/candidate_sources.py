"""Which candidate triplets teach a head on frozen features most (issue 15; docs/benchmarks.md).

A prototype in torch alone, on bench.quality's protocol: Lite0 features cached at 224 px, the
benchmark's autoencoder, 1,000 held-out queries, 5,000 simulated judgments, the residual head.

    python -m bench.fashion_mnist --out /tmp/fm10k --n 10000
    python -m bench.candidate_sources ae pretrained active-pretrained active-ae

Arms: "ae" / "pretrained" (neighbourhood policy on that embedding), "active-ae" /
"active-pretrained" (informative_pair), "rounds-SRC" (active, retrained after each 1,000).
Environment: FM_IMAGES (default /tmp/fm10k), CACHE (default /tmp/candidate_sources.pt), SHALLOW=1.
"""
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ranking.data import load_images
from ranking.nets import build_model, shallow_input, PretrainedRankingNet
from ranking.inference import CachedInputs, embed_cached, embed_images
from ranking.training import TrainConfig, fit_ranking_head, fit_autoencoder, seed_everything

root = Path(os.environ.get("FM_IMAGES", "/tmp/fm10k"))
paths, labels = [], []
for d in sorted(root.iterdir()):
    for f in sorted(d.iterdir()):
        paths.append(f); labels.append(d.name)
labels = np.array(labels)
N = len(paths)
cache = Path(os.environ.get("CACHE", "/tmp/candidate_sources.pt"))
if cache.exists():
    c = torch.load(cache, weights_only=False)
else:
    t = time.time()
    net = PretrainedRankingNet("efficientnet_lite0", 224, "imagenet").eval()
    feats, pix = [], []
    from ranking.inference import to_input
    for s in range(0, N, 64):
        x, _ = load_images(paths[s:s+64], 224)
        with torch.inference_mode():
            xf = to_input(x, torch.device("cpu"), channels_last=True)
            feats.append(torch.cat([net.features(xf[i:i+8]) for i in range(0, len(xf), 8)]).half())
            pix.append(shallow_input(xf, 224).mul_(255).round_().to(torch.uint8))
        if s % 1280 == 0: print(s, time.time() - t, flush=True)
    img28, _ = load_images(paths, 28)
    seed_everything(0)
    ae = build_model("autoencoder", image_size=28, embedding_dim=64, width=32, depth=2)
    fit_autoencoder(ae, img28, TrainConfig(epochs=10, batch_size=128, lr=2e-3, seed=0))
    aev = embed_images(ae, img28).numpy()
    c = {"features": torch.cat(feats), "pixels": torch.cat(pix), "ae": aev}
    torch.save(c, cache)
    print("cache built", time.time() - t, flush=True)
F = c["features"].float().numpy()
def unit(v): return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
vec = {"ae": unit(c["ae"]), "pretrained": unit(F)}
rng = random.Random(0)
held = sorted(rng.sample(range(N), 1000)); hs = set(held)
pool = [i for i in range(N) if i not in hs]
poolarr = np.array(pool)
Q = np.array(held)

def p10(v):
    v = unit(v); s = v[Q] @ v.T; s[np.arange(len(Q)), Q] = -np.inf
    top = np.argpartition(-s, 10, axis=1)[:, :10]
    return float((labels[top] == labels[Q][:, None]).mean())

def neighbours(v, qs, k=100):
    s = v[qs] @ v[poolarr].T
    order = np.argsort(-s, axis=1)[:, :k + 1]
    out = []
    for n, q in enumerate(qs):
        out.append([int(poolarr[j]) for j in order[n] if poolarr[j] != q][:k])
    return out

def informative_pair(q, cands):
    to_q = np.linalg.norm(cands - q, axis=1)
    between = np.sqrt(np.maximum(2 - 2 * cands @ cands.T, 0))
    spread = to_q[:, None] + to_q[None, :]
    score = (between - np.abs(to_q[:, None] - to_q[None, :])) / np.maximum(spread, 1e-12)
    score[np.tril_indices(len(cands))] = -np.inf
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(i), int(j), float(score[i, j])

def random_policy(v, qs, r, far_share=0.5):
    nb = neighbours(v, qs)
    out = []
    for q, ranked in zip(qs, nb):
        near = ranked[r.randint(1, 10) - 1]
        if r.random() < far_share:
            other = r.choice(pool)
            if other in (q, near): continue
        else:
            other = ranked[r.randint(11, 100) - 1]
        out.append((q, near, other))
    return out

def active_policy(v, qs, count, r, explore=0.2):
    nb = neighbours(v, qs)
    scored = []
    for q, ranked in zip(qs, nb):
        far = [i for i in r.sample(pool, 20) if i != q and i not in ranked]
        cand = ranked + far
        i, j, s = informative_pair(v[q], v[cand])
        scored.append((s, q, cand[i], cand[j]))
    scored.sort(key=lambda x: -x[0])
    n = round(count * (1 - explore))
    out = [(q, a, b) for s, q, a, b in scored[:n]]
    left = [row[1] for row in scored[n:]]; r.shuffle(left)
    out += random_policy(v, left[:count - len(out)], r)
    return out

def answer(t):
    q, a, b = (labels[i] for i in t)
    if (a == q) == (b == q): return None
    return (t[0], t[1], t[2]) if a == q else (t[0], t[2], t[1])

def train(trips, shallow=True, epochs=30, seed=0):
    seed_everything(seed)
    net = build_model("ranking", network="pretrained", backbone="efficientnet_lite0", image_size=32, weights=None,
                      embedding_dim=256, hidden_dim=512, shallow_channels=96, shallow=shallow)
    head = net.head
    inputs = CachedInputs(c["features"], c["pixels"] if shallow else None)
    rows = torch.tensor(trips, dtype=torch.long)
    t = time.time()
    fit_ranking_head(head, inputs, rows, TrainConfig(epochs=epochs, batch_size=64, lr=3e-4, margin=0.8,
                                                      in_batch_weight=0.0, seed=seed))
    return embed_cached(head, inputs).numpy(), time.time() - t

def judged(trips):
    return [a for a in (answer(t) for t in trips) if a is not None]

print("P@10 ae", p10(vec["ae"]), "pretrained", p10(vec["pretrained"]), flush=True)
shallow = os.environ.get("SHALLOW", "0") == "1"
budget = 5000
for name in sys.argv[1:]:
    r = random.Random(1)
    if name in ("ae", "pretrained"):
        qs = [r.choice(pool) for _ in range(budget)]
        trips = random_policy(vec[name], qs, r)
    elif name.startswith("active-"):
        src = name.split("-")[1]
        qs = r.sample(pool, min(len(pool), 3 * budget))
        trips = active_policy(vec[src], qs, budget, r)
    elif name.startswith("rounds-"):  # active on the model as it learns: 5 rounds of 1000
        src = name.split("-")[1]
        v = vec[src]; trips = []
        used = set()
        for rnd in range(5):
            qs = r.sample([p for p in pool if p not in used], 3000)
            new = active_policy(v, qs, 1000, r)
            used |= {t[0] for t in new}
            trips += new
            v, _ = train(judged(trips), shallow=False, epochs=30)
            v = unit(v)
            print(f"  round {rnd}: {len(judged(trips))} answerable, P@10 {p10(v):.3f}", flush=True)
    j = judged(trips)
    v, secs = train(j, shallow=shallow)
    print(f"{name}: {len(trips)} asked, {len(j)} answerable, P@10 {p10(v):.3f} ({secs:.0f} s)", flush=True)
