"""Recipe exploration for deep ranking on Fashion-MNIST, in torch alone (no database, no Django).

    python -m bench.ranking_recipes a|b     (or: python bench/ranking_recipes.py a)

Mirrors ``bench.quality`` in memory — the first 10,000 training images, 1,000
held-out queries, an autoencoder, 5,000 candidate triplets from its neighbours
answered by label — and tries pretraining / loss / epoch / sampling variants and
the all-labels upper bound, printing P@10 and held-out triplet accuracy for each.
Plan "a" is the grid, plan "b" self-training with mined neighbour pairs. Meant for a
GPU (the figures in docs/benchmarks.md came from an H100 in ≈ 6.5 min); it runs on a
CPU too, slowly. FASHION_MNIST_DIR points at the data (default: the Debian package's).
"""
import sys, time, json, torch, numpy as np, os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.fashion_mnist import DEFAULT_DIR, load
from ranking.nets import ConvAutoencoder, DeepRankingNet
from ranking.inference import embed_images
from ranking.metrics import triplet_accuracy
from ranking.training import TrainConfig, fit_autoencoder, fit_contrastive, fit_ranking, fit_labels
DEV = "cuda" if torch.cuda.is_available() else "cpu"
X, Y = load("train", DEFAULT_DIR)
X = torch.from_numpy(X[:10000].copy()); Y = torch.from_numpy(Y[:10000].astype(np.int64))
imgs = X[:, None].repeat(1, 3, 1, 1).contiguous()
g = torch.Generator().manual_seed(0)
perm = torch.randperm(10000, generator=g); heldout = perm[:1000]; trainq = perm[1000:]
def p_at_10(E):
    E = torch.nn.functional.normalize(E.float(), dim=1)
    s = E[heldout] @ E.T; s[torch.arange(1000), heldout] = -9
    return (Y[s.topk(10, dim=1).indices] == Y[heldout][:, None]).float().mean().item()
def neighbours(E, qs, k=100):
    E = torch.nn.functional.normalize(E.float(), dim=1)
    s = E[qs] @ E.T; s[torch.arange(len(qs)), qs] = -9
    return s.topk(k, dim=1).indices
def make_triplets(E, qs, n, far, gen, exclude=None, near=(0, 10), mid=(10, 100)):
    nb = neighbours(E, qs, 2 * mid[1])
    rows = []
    for j in torch.randint(len(qs), (n,), generator=gen).tolist():
        q = qs[j].item()
        cand = [c for c in nb[j].tolist() if exclude is None or c not in exclude][: mid[1]]
        a = cand[torch.randint(near[0], near[1], (1,), generator=gen).item()]
        if torch.rand(1, generator=gen).item() < far:
            b = torch.randint(10000, (1,), generator=gen).item()
        else:
            b = cand[torch.randint(mid[0], mid[1], (1,), generator=gen).item()]
        if b in (q, a): continue
        sa, sb = Y[a] == Y[q], Y[b] == Y[q]
        if sa and not sb: rows.append((q, a, b))
        elif sb and not sa: rows.append((q, b, a))
    return torch.tensor(rows)
T0 = time.time()
def log(*a):
    print(f"[{time.time()-T0:6.0f}s]", *a, flush=True)
log("raw P@10", p_at_10(imgs.flatten(1).float()))
torch.manual_seed(0)
ae = ConvAutoencoder(28, embedding_dim=64, depth=2)
fit_autoencoder(ae, imgs, TrainConfig(epochs=10, batch_size=128, lr=2e-3, device=DEV))
Eae = embed_images(ae, imgs, DEV)
log("AE P@10", p_at_10(Eae))
held = set(heldout.tolist())
trips = {}
for far in (0.5, 1.0):
    gg = torch.Generator().manual_seed(1)
    trips[far] = (make_triplets(Eae, trainq, 5000, far, gg, held), make_triplets(Eae, heldout, 2000, far, gg))
    log("far", far, "answerable", len(trips[far][0]), "val", len(trips[far][1]), "AE val acc", triplet_accuracy(Eae, trips[far][1]))
def new_model():
    torch.manual_seed(0)
    return DeepRankingNet("resnet18", embedding_dim=128, image_size=28)
def nn_triplets(k, mutual):
    En = torch.nn.functional.normalize(Eae.float(), dim=1)
    sims = En @ En.T; sims.fill_diagonal_(-9)
    topk = sims.topk(k, dim=1).indices
    keep = (topk[topk[:, 0], 0] == torch.arange(10000)) if mutual else torch.ones(10000, dtype=torch.bool)
    anchors = torch.arange(10000)[keep]
    gg = torch.Generator().manual_seed(2)
    pos = topk[keep][torch.arange(int(keep.sum())), torch.randint(0, k, (int(keep.sum()),), generator=gg)]
    neg = torch.randint(10000, (len(anchors),), generator=gg)
    log("nn pairs", len(anchors), "purity", (Y[anchors] == Y[pos]).float().mean().item())
    return torch.stack([anchors, pos, neg], 1)
pre_states = {}
def pretrained(key):
    if key in pre_states: return pre_states[key]
    m = new_model()
    kind, *rest = key.split(":")
    t = time.time()
    if kind == "simclr":
        fit_contrastive(m, imgs, TrainConfig(epochs=int(rest[0]), batch_size=256, lr=2e-3, temperature=0.2, device=DEV))
    elif kind == "nn":
        fit_ranking(m, imgs, nn_triplets(int(rest[1]), rest[2] == "m"), TrainConfig(epochs=int(rest[0]), batch_size=128, lr=1e-3, in_batch_loss="softmax", temperature=0.1, device=DEV))
    E = embed_images(m, imgs, DEV)
    log("PRE", key, "P@10", round(p_at_10(E), 4), "val", round(triplet_accuracy(E, trips[0.5][1]), 4), "t", round(time.time() - t, 1))
    pre_states[key] = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
    return pre_states[key]
results = []
def variant(pre="none", far=0.5, loss="softmax", epochs=10, lr=1e-3, temp=0.1, ibw=1.0, bs=64, margin=0.2):
    m = new_model()
    if pre != "none": m.load_state_dict(pretrained(pre))
    tr, va = trips[far]
    t = time.time()
    fit_ranking(m, imgs, tr, TrainConfig(epochs=epochs, batch_size=bs, lr=lr, margin=margin, in_batch_weight=ibw, in_batch_loss=loss, temperature=temp, device=DEV))
    E = embed_images(m, imgs, DEV)
    r = dict(pre=pre, far=far, loss=loss, epochs=epochs, lr=lr, temp=temp, ibw=ibw, bs=bs, p10=round(p_at_10(E), 4), val=round(triplet_accuracy(E, trips[0.5][1]), 4), t=round(time.time() - t, 1))
    log("RANK", json.dumps(r)); results.append(r)
def upper(pre="none", epochs=10, margin=0.2, lr=1e-3):
    m = new_model()
    if pre != "none": m.load_state_dict(pretrained(pre))
    t = time.time()
    fit_labels(m, imgs, Y, TrainConfig(epochs=epochs, batch_size=128, lr=lr, margin=margin, device=DEV))
    E = embed_images(m, imgs, DEV)
    log("UPPER", pre, epochs, margin, "P@10", round(p_at_10(E), 4), "val", round(triplet_accuracy(E, trips[0.5][1]), 4), "t", round(time.time() - t, 1))
plan = sys.argv[1] if len(sys.argv) > 1 else "a"
if plan == "a":
    variant()
    variant(far=1.0)
    variant(epochs=30)
    variant(pre="nn:10:1:a")
    variant(pre="nn:10:1:m")
    variant(pre="nn:10:5:a")
    variant(pre="simclr:30")
    variant(pre="simclr:100")
    variant(pre="nn:10:1:a", far=1.0)
    variant(pre="nn:10:1:a", epochs=30)
    variant(pre="nn:10:1:a", loss="hinge", ibw=0.2)
    variant(pre="nn:10:1:a", temp=0.05)
    variant(pre="simclr:30", far=1.0, epochs=20)
    upper(epochs=10); upper(epochs=30); upper(pre="nn:10:1:a", epochs=10); upper(pre="simclr:30", epochs=20)
    upper(epochs=20, margin=0.5)
    log("DONE")
def mined(E, mutual):
    En = torch.nn.functional.normalize(E.float(), dim=1)
    sims = En @ En.T; sims.fill_diagonal_(-9)
    nn1 = sims.argmax(1)
    keep = (nn1[nn1] == torch.arange(10000)) if mutual else torch.ones(10000, dtype=torch.bool)
    notheld = torch.ones(10000, dtype=torch.bool); notheld[heldout] = False
    keep = keep & notheld & notheld[nn1]
    a = torch.arange(10000)[keep]; p = nn1[keep]
    gg = torch.Generator().manual_seed(3)
    log("mined", len(a), "purity", round((Y[a] == Y[p]).float().mean().item(), 4))
    return torch.stack([a, p, torch.randint(10000, (len(a),), generator=gg)], 1)
def selftrain(rounds=3, mutual=True, rep=1, epochs0=30, epochs=15):
    m = new_model(); tr, va = trips[0.5]
    fit_ranking(m, imgs, tr, TrainConfig(epochs=epochs0, batch_size=64, lr=1e-3, in_batch_loss="softmax", temperature=0.1, device=DEV))
    E = embed_images(m, imgs, DEV)
    log("SELF r0", round(p_at_10(E), 4), round(triplet_accuracy(E, va), 4))
    for r in range(1, rounds + 1):
        t = torch.cat([tr.repeat(rep, 1), mined(E, mutual)])
        fit_ranking(m, imgs, t, TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, in_batch_loss="softmax", temperature=0.1, device=DEV, warmup_epochs=0))
        E = embed_images(m, imgs, DEV)
        log("SELF", r, "mutual", mutual, "rep", rep, round(p_at_10(E), 4), round(triplet_accuracy(E, va), 4))
if plan == "b":
    selftrain(3, True, 1)
    selftrain(3, False, 3)
    selftrain(2, True, 3, epochs=30)
    log("DONE")
if plan == "c":  # candidate policies: which ranks the two candidates come from
    for near, mid, far in (((0, 10), (10, 100), 0.5), ((0, 30), (30, 300), 0.5), ((0, 10), (10, 100), 0.0),
                           ((0, 50), (50, 1000), 0.3)):
        gg = torch.Generator().manual_seed(1)
        trips[far] = (make_triplets(Eae, trainq, 5000, far, gg, held, near, mid), trips[0.5][1])
        log("policy", near, mid, far, "answerable", len(trips[far][0]))
        variant(far=far, epochs=int(os.environ.get("EPOCHS", "30")))
    log("DONE")
