"""Search quality: raw pixels, the autoencoder, pretrained features, deep ranking (the default path and
from scratch) and an all-labels upper bound, on one library, the same queries and the same triplets.

    python -m bench.quality --images DIR [--triplets 5000] [--queries 1000] [--seed 0] [--json OUT]

DIR holds one sub-folder per label (``python -m bench.fashion_mnist --out DIR``
writes Fashion-MNIST that way). In a scratch database, through the app's own
services, it:

1. imports the images (the folder name is each image's label);
2. trains the autoencoder, embeds and indexes the library with it; prepares pretrained
   features (``--pretrained-backbone`` at ``--pretrained-size`` px) and embeds the library
   with them: this is the one-off feature pass, which fills the feature cache (with
   ``--baselines-only`` it stops after scoring these against raw pixels);
3. holds out ``--queries`` images: they are never in a training triplet;
4. draws candidate triplets from autoencoder neighbours exactly as the labeling
   app serves them (``labeling.services.triplets_generate``) and answers them
   with a simulated expert who knows the labels, stored as judgments: the
   candidate sharing the query's label is more similar; "can't tell" when both
   or neither do;
5. trains deep ranking the default way (the head on the frozen backbone's cached
   features, with the shallow pixel branches) and embeds the library from the cache;
6. trains deep ranking from scratch as before the cache (resnet18 at ``--scratch-size`` px,
   random weights, the whole network on the images) and embeds the library;
7. trains the default network with every non-held-out image's label (the upper bound);
8. reports, for each method, P@10 (share of the 10 nearest library images that
   share the query's label, averaged over the held-out queries) and held-out
   triplet accuracy (triplets drawn the same way around the held-out queries,
   answerable ones only), plus wall time per phase and the feature pass's rate
   against the bare backbone's, measured in the same run.

The last line printed is the JSON summary. The scratch database and files are removed at the end (kept with --keep-database).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per label")
    p.add_argument("--triplets", type=int, default=5000, help="judgments to simulate")
    p.add_argument("--queries", type=int, default=1000, help="held-out query images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument("--scratch-size", type=int, default=28, help="input size of deep ranking from scratch, px")
    p.add_argument("--autoencoder-size", type=int, default=28)
    p.add_argument("--autoencoder-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=30, help="deep-ranking epochs (both ways)")
    p.add_argument("--pretrain-epochs", type=int, default=0, help="self-supervised epochs before ranking from scratch")
    p.add_argument("--skip-scratch", action="store_true", help="leave out deep ranking from scratch (≈ 6 min here)")
    p.add_argument("--ablations", action="store_true",
                   help="also train the default head without its shallow pixel branches (what each part contributes)")
    p.add_argument("--upper-epochs", type=int, default=None, help="default: --epochs")
    p.add_argument("--pretrained-backbone", default="efficientnet_lite0")
    p.add_argument("--pretrained-size", type=int, default=224, help="pretrained features' input size, px")
    p.add_argument("--baselines-only", action="store_true",
                   help="score raw pixels, the autoencoder and pretrained features only (no judgments, no training)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other ranking hyperparameter (see manage.py train --list-hyperparameters)")
    p.add_argument("--far-share", type=float, default=0.5, help="share of candidates drawn from the whole library")
    p.add_argument("--selection", help="learning curves instead: 'random', 'active' or 'random,active' "
                                       "(candidate selection; see labeling.services.triplets)")
    p.add_argument("--budgets", default="500,1000,2500,5000",
                   help="with --selection: judgment counts at which to train and measure")
    p.add_argument("--device", default="auto")
    p.add_argument("--keep-database", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from bench.ingest import drop_database, scratch_database

    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    name = f"bench_quality_{os.getpid()}"
    url, admin = scratch_database(name)
    os.environ.update({
        "DATABASE_URL": url, "IMAGESEARCH_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "RANKING_DEVICE": args.device, "RANKING_IMAGE_SIZE": str(args.pretrained_size),
        "RANKING_BACKBONE": args.pretrained_backbone, "RANKING_BACKBONE_WEIGHTS": "imagenet",
        "RANKING_AUTOENCODER_IMAGE_SIZE": str(args.autoencoder_size), "RANKING_AUTO_ACTIVATE": "1",
        "RANKING_PRETRAINED_BACKBONE": args.pretrained_backbone,
        "RANKING_PRETRAINED_IMAGE_SIZE": str(args.pretrained_size),
        "RANKING_AUTO_TRAIN": "0",  # this script trains each model itself
        "RANKING_EMBED_CHUNK_SIZE": "2048", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    })
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        if settings.EMBEDDED_REDIS:  # the cache (judgments use it) lives there, as under manage.py
            from imagesearch.embedded_redis import redis_for_this_process

            redis_for_this_process(settings.EMBEDDED_REDIS_DIR)

        call_command("migrate", verbosity=0)
        summary = run_curves(args) if args.selection else run(args)
    finally:
        if not args.keep_database:
            from django.db import connections

            connections.close_all()
            drop_database(admin, name)
            shutil.rmtree(work, ignore_errors=True)
    line = json.dumps(summary)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return summary


class Phases:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *a, **kw):
        print(f"[{time.strftime('%H:%M:%S')}] {name} …", file=sys.stderr, flush=True)
        start = time.monotonic()
        out = fn(*a, **kw)
        self.seconds[name] = round(time.monotonic() - start, 1)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {self.seconds[name]} s", file=sys.stderr, flush=True)
        return out


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    from imagesearch.models import Image
    from labeling.models import TripletJudgment
    from labeling.services.judgments import judgment_record
    from labeling.services.triplets import CandidatePolicy, triplets_generate
    from ranking.management.commands.train import parse_settings
    from ranking.models import ModelVersion
    from ranking.selectors import active_version, nearest_images
    from ranking.services.criteria import criterion_default
    from ranking.services.training import training_start, version_train

    phases = Phases()
    started = time.monotonic()
    rng = random.Random(args.seed)

    phases.run("import", _import, args.images)
    rows = list(Image.objects.order_by("pk").values_list("pk", "label"))
    ids = np.array([r[0] for r in rows])
    label_of = {pk: label for pk, label in rows}
    criterion = criterion_default()

    autoencoder = phases.run("train autoencoder", lambda: version_train(version_id=training_start(
        criterion=criterion, kind="autoencoder", dispatch=False,
        hyperparameters={"epochs": args.autoencoder_epochs, "seed": args.seed}).pk, embed="inline"))
    assert autoencoder.status == ModelVersion.Status.ACTIVE, autoencoder.error
    pretrained = phases.run("pretrained features (the one-off feature pass)", lambda: version_train(version_id=training_start(
        criterion=criterion, kind="pretrained", dispatch=False).pk, embed="inline"))
    assert pretrained.status == ModelVersion.Status.READY, pretrained.error

    held_out = sorted(rng.sample(list(ids), args.queries))
    held = set(held_out)
    pool = [int(i) for i in ids if i not in held]
    policy = CandidatePolicy(far_share=args.far_share)

    def simulate():
        queries = [rng.choice(pool) for _ in range(args.triplets)]
        triplets = triplets_generate(criterion=criterion, version=autoencoder, query_ids=queries, policy=policy,
                                     seed=args.seed, exclude_ids=held)
        answers = {"a": 0, "b": 0, "unsure": 0}
        for t in triplets:
            answer = expert_answer(label_of[t.query_id], label_of[t.candidate_a_id], label_of[t.candidate_b_id])
            answers[answer] += 1
            judgment_record(triplet=t, answer=answer, source=TripletJudgment.Source.SIMULATED)
        return answers

    if args.baselines_only:
        return _baselines(args, phases, started, ids, label_of, held_out, autoencoder, pretrained, policy)
    answers = phases.run("candidate triplets and simulated judgments", simulate)
    val = _evaluation_triplets(autoencoder, held_out, policy, args.seed, label_of)

    hyper = {"epochs": args.epochs, "seed": args.seed, **parse_settings(args.set)}
    ranking = phases.run("train deep ranking (head on cached features) and embed from the cache", lambda: version_train(
        version_id=training_start(criterion=criterion, kind="ranking", dispatch=False, hyperparameters=hyper).pk,
        embed="inline"))
    if ranking.status == ModelVersion.Status.FAILED:
        raise SystemExit(f"deep ranking failed: {ranking.error}")
    ranking_embed_seconds = _job_seconds(ranking.embedding_job_id)
    scratch = None
    if not args.skip_scratch:
        scratch_hyper = {"backbone_mode": "full", "backbone": "resnet18", "weights": None,
                         "image_size": args.scratch_size, "epochs": args.epochs,
                         "pretrain_epochs": args.pretrain_epochs, "seed": args.seed}
        scratch = phases.run("train deep ranking from scratch and embed", lambda: version_train(
            version_id=training_start(criterion=criterion, kind="ranking", dispatch=False,
                                      hyperparameters=scratch_hyper).pk, embed="inline"))
        if scratch.status == ModelVersion.Status.FAILED:
            raise SystemExit(f"deep ranking from scratch failed: {scratch.error}")

    index = {int(pk): n for n, pk in enumerate(ids)}
    labels = np.array([label_of[int(pk)] for pk in ids])
    queries = np.array([index[q] for q in held_out])
    val_idx = np.array([[index[i] for i in t] for t in val])

    def scores(vectors: np.ndarray) -> dict:
        return {"p_at_10": precision_at_k(vectors, labels, queries, 10),
                "triplet_accuracy": triplet_accuracy(vectors, val_idx)}

    results = {}
    pool_idx = np.array([index[int(i)] for i in ids if int(i) not in held])
    raw = phases.run("raw pixels", _raw_pixels, ids, args.scratch_size)
    upper = phases.run("upper bound (default network, all labels)", _upper_bound, ids, labels, pool_idx, args, ranking)
    results["raw_pixels"] = scores(raw)
    for key, version in (("autoencoder", autoencoder), ("pretrained_features", pretrained), ("deep_ranking", ranking),
                         ("deep_ranking_from_scratch", scratch)):
        if version is not None:
            results[key] = scores(_stored_vectors(version, ids))
    results["upper_bound"] = scores(upper)
    ablations = {}
    if args.ablations:
        ablations["deep_ranking_without_shallow_branches"] = scores(phases.run(
            "ablation: head without shallow branches", _head_variant, ids, ranking, args, shallow=False))
    ae, pf, dr, up = (results[k]["p_at_10"] for k in ("autoencoder", "pretrained_features", "deep_ranking",
                                                       "upper_bound"))
    gap = (dr - ae) / (up - ae) if up != ae else None
    ranking.refresh_from_db()

    # The app's own search (HNSW through pgvector) for the active version, on a random sample
    # of the held-out queries, next to the exact figure for the same queries.
    served = active_version(criterion=criterion)
    sample = sorted(random.Random(args.seed).sample(held_out, min(200, len(held_out))))
    hnsw_p10 = float(np.mean([
        np.mean([h.image.label == label_of[q] for h in nearest_images(version=served, image_id=q, k=10)])
        for q in sample]))
    exact_p10 = precision_at_k(_stored_vectors(served, ids), labels, np.array([index[q] for q in sample]), 10)
    bare_rate = phases.run("bare backbone inference rate", _bare_rate, args)
    feature_pass = phases.seconds["pretrained features (the one-off feature pass)"]
    pass_rate = len(ids) / feature_pass
    train_seconds = ranking.metrics.get("seconds")
    total = round(time.monotonic() - started, 1)
    return {
        "dataset": str(args.images), "images": len(ids), "held_out_queries": len(held_out),
        "judgments": args.triplets, "answers": answers,
        "training_triplets": ranking.metrics.get("train_triplets"),
        "ranking_validation_triplets": ranking.metrics.get("val_triplets"), "evaluation_triplets": len(val),
        "results": results, "ablations": ablations, "gap_closed": gap,
        "feature_pass": {"images_per_second": round(pass_rate, 1), "bare_model_images_per_second": round(bare_rate, 1),
                         "ratio": round(pass_rate / bare_rate, 3)},
        "deep_ranking_training_seconds": train_seconds, "deep_ranking_embedding_seconds": ranking_embed_seconds,
        "targets_met": {"deep_ranking_p_at_10>=0.90": dr >= 0.90,
                        "deep_ranking_p_at_10>=pretrained+0.05": dr >= pf + 0.05,
                        "gap_closed>=0.70": gap is not None and gap >= 0.70,
                        "training<=300s": train_seconds is not None and train_seconds <= 300,
                        "feature_pass>=0.8*bare": pass_rate >= 0.8 * bare_rate,
                        "total<1200s": total < 1200},
        "active_version": {"id": served.pk, "kind": served.kind, "sample_queries": len(sample),
                           "p_at_10_via_hnsw": hnsw_p10, "p_at_10_exact": exact_p10},
        "ranking_val_accuracy": ranking.metrics.get("val_accuracy"),
        "ranking_hyperparameters": ranking.hyperparameters, "seconds": phases.seconds,
        "total_seconds": total, "seed": args.seed,
    }


def _job_seconds(job_id) -> float | None:
    from imagesearch.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None or not job.started_at or not job.finished_at:
        return None
    return round((job.finished_at - job.started_at).total_seconds(), 1)


def _bare_rate(args, seconds: float = 20.0) -> float:
    """Images per second of the bare backbone on in-memory tensors, in the batches the feature pass uses."""
    import torch

    from ranking.nets import PretrainedFeatures
    from ranking.inference import inference_batch_size, resolve_device

    device = resolve_device(args.device)
    model = PretrainedFeatures(args.pretrained_backbone, args.pretrained_size, "imagenet").eval().to(device)
    batch = inference_batch_size(device, args.pretrained_size)
    x = torch.rand(batch, 3, args.pretrained_size, args.pretrained_size, device=device)
    if device.type == "cuda" or args.pretrained_size >= 96:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model.features(x)
        done, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            model.features(x)
            done += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
    return done / (time.monotonic() - start)


def _evaluation_triplets(autoencoder, held_out, policy, seed, label_of) -> list[tuple[int, int, int]]:
    """Answerable triplets around the held-out queries, drawn as the labeling app draws them."""
    from labeling.services.triplets import triplet_candidates

    val = []
    for q, a, b, _ in triplet_candidates(version=autoencoder, query_ids=held_out * 2, policy=policy, seed=seed + 1):
        answer = expert_answer(label_of[q], label_of[a], label_of[b])
        if answer != "unsure":
            val.append((q, a, b) if answer == "a" else (q, b, a))
    return val


def _baselines(args, phases, started, ids, label_of, held_out, autoencoder, pretrained, policy) -> dict:
    """--baselines-only: what a library has before any judgment, scored as ``run`` scores everything."""
    import numpy as np
    from django.conf import settings

    from imagesearch.models import Image
    from ranking.data import load_images

    index = {int(pk): n for n, pk in enumerate(ids)}
    labels = np.array([label_of[int(pk)] for pk in ids])
    queries = np.array([index[q] for q in held_out])
    val = _evaluation_triplets(autoencoder, held_out, policy, args.seed, label_of)
    val_idx = np.array([[index[i] for i in t] for t in val])
    names = dict(Image.objects.values_list("pk", "file"))
    images, _ = load_images([settings.MEDIA_ROOT / names[int(i)] for i in ids], args.scratch_size)
    results = {}
    for key, vectors in (("raw_pixels", images.flatten(1).float().numpy()),
                         ("autoencoder", _stored_vectors(autoencoder, ids)),
                         ("pretrained_features", _stored_vectors(pretrained, ids))):
        results[key] = {"p_at_10": precision_at_k(vectors, labels, queries, 10),
                        "triplet_accuracy": triplet_accuracy(vectors, val_idx)}
    return {"dataset": str(args.images), "images": len(ids), "held_out_queries": len(held_out),
            "evaluation_triplets": len(val), "results": results,
            "pretrained": {"backbone": args.pretrained_backbone, "image_size": args.pretrained_size,
                           "weights": pretrained.metrics.get("weights_init")},
            "seconds": phases.seconds, "total_seconds": round(time.monotonic() - started, 1), "seed": args.seed}


def run_curves(args: argparse.Namespace) -> dict:
    """P@10 and held-out triplet accuracy against the number of judgments, for each selection.

    Each selection starts from the same autoencoder and held-out queries with no
    judgments. At each budget it draws (budget − judgments so far) more triplets,
    has the simulated expert answer them, trains deep ranking from scratch on all
    judgments so far, and measures. Random selection draws from autoencoder
    neighbours by the candidate policy, one triplet per random query (as in
    ``run``); active selection picks, from three times as many unused queries, the
    triplets the newest model (the autoencoder in the first round) is least sure
    of (``triplet_candidates_active``).
    """
    import numpy as np
    from django.conf import settings

    from imagesearch.models import Image
    from labeling.models import Triplet, TripletJudgment
    from labeling.services.judgments import judgment_record
    from labeling.services.triplets import CandidatePolicy, triplets_generate
    from ranking.management.commands.train import parse_settings
    from ranking.models import ModelVersion
    from ranking.services.criteria import criterion_default
    from ranking.services.training import training_start, version_train
    from ranking.services.versions import version_retire

    phases = Phases()
    started = time.monotonic()
    rng = random.Random(args.seed)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    phases.run("import", _import, args.images)
    rows = list(Image.objects.order_by("pk").values_list("pk", "label"))
    ids = np.array([r[0] for r in rows])
    label_of = {pk: label for pk, label in rows}
    labels = np.array([label_of[int(pk)] for pk in ids])
    index = {int(pk): n for n, pk in enumerate(ids)}
    criterion = criterion_default()
    autoencoder = phases.run("train autoencoder", lambda: version_train(version_id=training_start(
        criterion=criterion, kind="autoencoder", dispatch=False,
        hyperparameters={"epochs": args.autoencoder_epochs, "seed": args.seed}).pk, embed="inline"))
    assert autoencoder.status == ModelVersion.Status.ACTIVE, autoencoder.error
    settings.RANKING_AUTO_ACTIVATE = False  # the autoencoder stays active; each arm measures its own versions

    held_out = sorted(rng.sample(list(ids), args.queries))
    held = set(held_out)
    pool = [int(i) for i in ids if i not in held]
    policy = CandidatePolicy(far_share=args.far_share)
    val = _evaluation_triplets(autoencoder, held_out, policy, args.seed, label_of)
    val_idx = np.array([[index[i] for i in t] for t in val])
    queries = np.array([index[q] for q in held_out])
    hyper = {"epochs": args.epochs, "pretrain_epochs": args.pretrain_epochs, "seed": args.seed,
             **parse_settings(args.set)}
    ae_vectors = _stored_vectors(autoencoder, ids)
    curves: dict = {"autoencoder": {"p_at_10": precision_at_k(ae_vectors, labels, queries, 10),
                                    "triplet_accuracy": triplet_accuracy(ae_vectors, val_idx)}}
    for selection in args.selection.split(","):
        arm_rng = random.Random(f"{args.seed}:{selection}")
        unused = pool[:]
        arm_rng.shuffle(unused)
        selector, done, points, versions = autoencoder, 0, [], []
        for budget in budgets:
            def judge(n=budget - done, selector=selector):
                if selection == "active":
                    sample, unused[:] = unused[: 3 * n], unused[3 * n:]
                    if len(sample) < 3 * n:  # every query used once: draw again from the whole pool
                        sample += arm_rng.sample([q for q in pool if q not in set(sample)], 3 * n - len(sample))
                    triplets = triplets_generate(criterion=criterion, version=selector, query_ids=sample, policy=policy,
                                                 seed=arm_rng.randrange(2**31), exclude_ids=held,
                                                 selection="active", count=n)
                else:
                    triplets = triplets_generate(criterion=criterion, version=autoencoder, policy=policy,
                                                 query_ids=[arm_rng.choice(pool) for _ in range(n)],
                                                 seed=arm_rng.randrange(2**31), exclude_ids=held)
                answers = {"a": 0, "b": 0, "unsure": 0}
                for t in triplets:
                    answer = expert_answer(label_of[t.query_id], label_of[t.candidate_a_id], label_of[t.candidate_b_id])
                    answers[answer] += 1
                    judgment_record(triplet=t, answer=answer, source=TripletJudgment.Source.SIMULATED)
                return answers

            answers = phases.run(f"{selection} {budget}: select and judge", judge)
            version = phases.run(f"{selection} {budget}: train deep ranking", lambda: version_train(
                version_id=training_start(criterion=criterion, kind="ranking", dispatch=False, parent=autoencoder,
                                          hyperparameters=hyper).pk, embed="inline"))
            if version.status == ModelVersion.Status.FAILED:
                raise SystemExit(f"deep ranking failed at {selection} {budget}: {version.error}")
            vectors = _stored_vectors(version, ids)
            point = {"judgments": TripletJudgment.objects.filter(triplet__criterion=criterion).count(),
                     "answers_this_round": answers, "training_triplets": version.metrics.get("train_triplets"),
                     "p_at_10": precision_at_k(vectors, labels, queries, 10),
                     "triplet_accuracy": triplet_accuracy(vectors, val_idx)}
            print(f"[{time.strftime('%H:%M:%S')}] {selection} {json.dumps(point)}", file=sys.stderr, flush=True)
            points.append(point)
            versions.append(version)
            selector, done = version, budget
        curves[selection] = points
        Triplet.objects.filter(criterion=criterion).delete()  # the next arm starts without judgments
        for version in versions:
            version_retire(version_id=version.pk, delete_weights=True)

    summary = {"dataset": str(args.images), "images": len(ids), "held_out_queries": len(held_out),
               "evaluation_triplets": len(val), "budgets": budgets, "curves": curves,
               "seconds": phases.seconds, "total_seconds": round(time.monotonic() - started, 1), "seed": args.seed}
    if "random" in curves and "active" in curves:
        # the target: the fewest judgments at which active selection reaches random's P@10 at the largest budget
        goal = curves["random"][-1]["p_at_10"]
        reached = [p["judgments"] for p in curves["active"] if p["p_at_10"] >= goal]
        summary["active_reaches_random_final_p_at_10_with"] = reached[0] if reached else None
    return summary


def expert_answer(query: str, a: str, b: str) -> str:
    """The simulated expert: the candidate sharing the query's label; "can't tell" if both or neither do."""
    if (a == query) == (b == query):
        return "unsure"
    return "a" if a == query else "b"


def precision_at_k(vectors, labels, queries, k: int) -> float:
    """Mean share of each query's k nearest (cosine; itself excluded) that share its label."""
    import numpy as np

    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = v[queries] @ v.T
    sims[np.arange(len(queries)), queries] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return float((labels[top] == labels[queries][:, None]).mean())


def triplet_accuracy(vectors, triplets) -> float:
    """``ranking.metrics.triplet_accuracy`` on L2-normalised vectors (raw pixels are not)."""
    import torch

    from ranking.metrics import triplet_accuracy as accuracy

    v = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)
    return accuracy(v, torch.as_tensor(triplets, dtype=torch.long))


def _import(folder: Path) -> None:
    from imagesearch.services.ingest import ingest_job_create, ingest_job_run

    job = ingest_job_create(paths=[str(folder)], collection_name="Benchmark", label_from_folder=True)
    ingest_job_run(job_id=job.pk, inline=True)


def _stored_vectors(version, ids):
    import numpy as np

    from ranking.selectors import embedding_vectors

    found = embedding_vectors(version=version, image_ids=[int(i) for i in ids])
    return np.stack([found[int(i)] for i in ids])


def _raw_pixels(ids, size: int):
    from django.conf import settings

    from imagesearch.models import Image
    from ranking.data import load_images

    names = dict(Image.objects.values_list("pk", "file"))
    images, _ = load_images([settings.MEDIA_ROOT / names[int(i)] for i in ids], size)
    return images.flatten(1).float().numpy()


def _cached_network(ranking, ids, **overrides):
    """A fresh default network like the ranking version's, and the cached inputs of ``ids``."""
    from ranking.nets import build_model
    from ranking.services.features import features_load
    from ranking.services.hyperparameters import ranking_model_params

    params = {**ranking_model_params(ranking.hyperparameters), **overrides}
    inputs, found = features_load(extractor=ranking.feature_extractor, image_ids=[int(i) for i in ids])
    assert len(found) == len(ids), "every library image has cached features after the pretrained pass"
    return build_model("ranking", **params), inputs


def _upper_bound(ids, labels, pool_idx, args, ranking):
    """The default network (a head on the cached features, with the shallow branches) trained on the
    label of every image but the held-out queries (whose labels would otherwise leak into their P@10)."""
    import numpy as np
    import torch

    from ranking.inference import CachedInputs, embed_cached, resolve_device
    from ranking.training import TrainConfig, fit_labels_head, seed_everything

    hp = ranking.hyperparameters
    seed_everything(args.seed)
    model, inputs = _cached_network(ranking, ids)
    _, codes = np.unique(labels, return_inverse=True)
    pool = torch.from_numpy(pool_idx)
    fit_labels_head(model.head, CachedInputs(inputs.features[pool], inputs.pixels[pool]), torch.from_numpy(codes)[pool],
                    TrainConfig(epochs=args.upper_epochs or args.epochs, batch_size=128, lr=hp["lr"],
                                margin=hp["margin"], seed=args.seed, device=args.device))
    return embed_cached(model, inputs, resolve_device(args.device)).numpy()


def _head_variant(ids, ranking, args, **overrides):
    """The default head retrained on the ranking version's own triplets with some part changed."""
    import torch

    from labeling.selectors import training_triplets
    from ranking.inference import embed_cached, resolve_device
    from ranking.services.evaluation import split_by_query
    from ranking.training import TrainConfig, fit_ranking_head, seed_everything

    hp = ranking.hyperparameters
    seed_everything(args.seed)
    model, inputs = _cached_network(ranking, ids, **overrides)
    train, _ = split_by_query(training_triplets(criterion=ranking.criterion), hp["val_fraction"], hp.get("seed", 0))
    position = {int(pk): n for n, pk in enumerate(ids)}
    rows = torch.tensor([[position[i] for i in t] for t in train], dtype=torch.long)
    fit_ranking_head(model.head, inputs, rows, TrainConfig(
        epochs=hp["epochs"], batch_size=hp["batch_size"], lr=hp["lr"], margin=hp["margin"],
        in_batch_weight=hp["in_batch_weight"], seed=args.seed, device=args.device))
    return embed_cached(model, inputs, resolve_device(args.device)).numpy()


if __name__ == "__main__":
    main()
