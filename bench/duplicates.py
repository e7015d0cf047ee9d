"""Near-duplicates: how well the groups match known copies, and how the scan's time grows.

    python -m bench.duplicates [--originals 600] [--copied 200] [--vectors 25000,50000,100000] [--json OUT]

In a scratch database it:

1. quality: takes ``--originals`` Fashion-MNIST test images (upscaled to 112 px, as figures in a
   document would be), and for ``--copied`` of them adds three copies: half size, JPEG quality
   40, and 4 % cropped off each side. Fashion-MNIST is a hard case: hundreds of plain T-shirts and
   sneakers that look alike without being copies. Everything is imported through the app
   (``image_ingest_bytes``), embedded by the default first model (pretrained EfficientNet-Lite0
   features, average-pooled) and by the features made for near-duplicates (max-pooled,
   ``duplicate_features_prepare``), scanned with each (``duplicate_scan_start``, in this process), and grouped at several
   thresholds, with and without the mutual-neighbour rule (``duplicate_groups(mutual=...)``); the pairs of images in one group are compared with the true pairs (an original and
   its copies): pairwise precision and recall;
2. scale: for each size in ``--vectors``, loads that many clustered synthetic 256-d unit vectors
   (``bench.search``'s generator) of which 1 % are planted copies (a vector plus noise, cosine
   distance about 0.01), builds the HNSW index, and times the whole scan in one process (a worker's
   share: the chunks spread over every worker), with the planted pairs found as a check. The time
   at 1M is extrapolated from a power law fitted to the sizes measured.

The last line printed is the JSON summary.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", type=int, default=600, help="distinct images (0: skip the quality part)")
    parser.add_argument("--copied", type=int, default=200, help="originals that get three copies each")
    parser.add_argument("--thresholds", default="0.06,0.08,0.1,0.12,0.15,0.2")
    parser.add_argument("--mutual", default="3,10", help="mutual-neighbour rules to group with (10: any pair found)")
    parser.add_argument("--vectors", default="25000,50000,100000", help="sizes for the scale part ('' skips it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the summary here")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def copies_of(im) -> dict[str, bytes]:
    from PIL import Image as PILImage

    def encode(picture, fmt="PNG", **params) -> bytes:
        out = io.BytesIO()
        picture.save(out, fmt, **params)
        return out.getvalue()

    w, h = im.size
    return {"half": encode(im.resize((w // 2, h // 2), PILImage.BILINEAR)),
            "jpeg40": encode(im.convert("RGB"), "JPEG", quality=40),
            "cropped": encode(im.crop((w * 4 // 100, h * 4 // 100, w - w * 4 // 100, h - h * 4 // 100)))}


def pairwise(groups: list[set[int]], truth: list[set[int]]) -> dict:
    """Precision and recall over the pairs of images put in one group."""
    def pairs(sets):
        return {(a, b) for s in sets for a in s for b in s if a < b}

    found, true = pairs(groups), pairs(truth)
    hit = len(found & true)
    return {"pairs_found": len(found), "true_pairs": len(true), "precision": hit / len(found) if found else 1.0,
            "recall": hit / len(true) if true else 1.0}


def measure_quality(args) -> dict:
    from PIL import Image as PILImage

    from bench.fashion_mnist import load
    from imagesearch.services.ingest import image_ingest_bytes
    from imagesearch.services.library import collection_get_or_create
    from ranking.selectors import duplicate_groups
    from ranking.services.criteria import criterion_default
    from ranking.services.duplicates import duplicate_features_prepare, duplicate_scan_run_inline, duplicate_scan_start
    from ranking.services.training import training_start, version_train

    images, _ = load("t10k")
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(images), size=args.originals, replace=False)
    collection = collection_get_or_create(name="Fashion-MNIST copies")
    families: list[set[int]] = []
    start = time.perf_counter()
    for n, index in enumerate(chosen):
        im = PILImage.fromarray(images[index]).resize((112, 112), PILImage.BICUBIC)
        out = io.BytesIO()
        im.save(out, "PNG")
        family = set(image_ingest_bytes(data=out.getvalue(), original_name=f"fm{index}.png",
                                        collection=collection).image_ids)
        if n < args.copied:
            for kind, data in copies_of(im).items():
                family |= set(image_ingest_bytes(data=data, original_name=f"fm{index}-{kind}.png",
                                                 collection=collection).image_ids)
        families.append(family)
    import_s = time.perf_counter() - start
    count = sum(map(len, families))
    log(f"imported {count} images in {import_s:.1f} s; embedding them with the pretrained features …")
    criterion = criterion_default()
    start = time.perf_counter()
    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version_train(version_id=version.pk, embed="inline")
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    max_version = duplicate_features_prepare(criterion=criterion, dispatch=False)
    version_train(version_id=max_version.pk, embed="inline")
    embed_max_s = time.perf_counter() - start
    log(f"embedded in {embed_s:.1f} s (average-pooled features), {embed_max_s:.1f} s (max-pooled)")
    rows, scans = [], {}
    for features, used in (("avg", version), ("max", max_version)):
        used.refresh_from_db()
        start = time.perf_counter()
        scan = duplicate_scan_start(criterion=criterion, version=used,
                                    max_distance=max(map(float, args.thresholds.split(","))), dispatch=False)
        duplicate_scan_run_inline(scan=scan)
        scans[features] = round(time.perf_counter() - start, 2)
        scan.refresh_from_db()
        log(f"{features}-pooled features: scanned in {scans[features]:.2f} s, {scan.pair_count} pairs")
        for mutual in map(int, args.mutual.split(",")):
            for threshold in map(float, args.thresholds.split(",")):
                found = duplicate_groups(scan=scan, max_distance=threshold, mutual=mutual, limit=10**9)
                groups = [{g.reference.pk, *(m.image.pk for m in g.members)} for g in found.groups]
                row = {"features": features, "threshold": threshold, "mutual": found.mutual,
                       "groups": found.group_count, **pairwise(groups, [f for f in families if len(f) > 1])}
                rows.append(row)
                log(f"{features}, threshold {threshold:g}, mutual {found.mutual}: {row['groups']} groups, "
                    f"precision {row['precision']:.3f}, recall {row['recall']:.3f} ({row['pairs_found']} pairs "
                    f"found, {row['true_pairs']} true)")
    return {"images": count, "originals": args.originals, "copied": args.copied, "import_s": round(import_s, 1),
            "embed_s": round(embed_s, 1), "embed_max_s": round(embed_max_s, 1), "scan_s": scans, "thresholds": rows}


def measure_scale(sizes: list[int], seed: int) -> list[dict]:
    from django.conf import settings

    from bench.search import clustered_vectors, default_model_version, library_empty, load_library
    from imagesearch.services.library import collection_get_or_create
    from ranking.services.criteria import criterion_default
    from ranking.services.duplicates import duplicate_scan_run_inline, duplicate_scan_start
    from ranking.services.embeddings import index_build

    rows = []
    for n in sizes:
        library_empty()
        rng = np.random.default_rng(seed)
        vectors, _, _ = clustered_vectors(n, 256, 100, 16, rng)
        planted = n // 100
        sources = rng.choice(n - planted, size=planted, replace=False)
        noisy = vectors[sources] + rng.normal(0, 0.1 / math.sqrt(256), size=(planted, 256)).astype(np.float32)
        vectors[n - planted:] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        version = default_model_version(criterion_default(), Path(settings.RANKING_MODELS_DIR), 256)
        load_library(vectors, version.pk, collection_get_or_create(name="Bench").pk)
        start = time.perf_counter()
        index_build(version=version)
        build_s = time.perf_counter() - start
        version.refresh_from_db()
        start = time.perf_counter()
        scan = duplicate_scan_start(criterion=version.criterion, version=version, max_distance=0.05, dispatch=False)
        duplicate_scan_run_inline(scan=scan)
        scan_s = time.perf_counter() - start
        truth = {(int(s) + 1, n - planted + i + 1) for i, s in enumerate(sources)}  # image id = row + 1
        found = set(scan.pairs.values_list("image_a_id", "image_b_id"))
        row = {"vectors": n, "index_build_s": round(build_s, 1), "scan_s": round(scan_s, 1),
               "images_per_s": round(n / scan_s), "pairs": len(found),
               "planted_found": round(len(truth & found) / len(truth), 4)}
        rows.append(row)
        log(f"{n:,} vectors: index {build_s:.1f} s, scan {scan_s:.1f} s ({row['images_per_s']} images/s), "
            f"{row['planted_found']:.1%} of the planted copies found, {len(found)} pairs")
    return rows


def growth(rows: list[dict]) -> dict | None:
    """scan_s = a · n^b fitted by least squares on the logs; the time at 1M from it."""
    if len(rows) < 2:
        return None
    x = np.log([r["vectors"] for r in rows])
    y = np.log([r["scan_s"] for r in rows])
    b, log_a = np.polyfit(x, y, 1)
    return {"exponent": round(float(b), 3), "scan_s_at_1m": round(float(math.exp(log_a) * 1e6 ** b))}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from bench.ingest import scratch_django, summary_print

    summary = {"cpus": os.cpu_count()}
    with scratch_django("bench_duplicates"):
        if args.originals:
            summary["quality"] = measure_quality(args)
        sizes = [int(x) for x in args.vectors.split(",") if x]
        if sizes:
            summary["scale"] = measure_scale(sizes, args.seed)
            summary["growth"] = growth(summary["scale"])
    return summary_print(summary, args.json)


if __name__ == "__main__":
    main()
