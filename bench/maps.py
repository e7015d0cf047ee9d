"""Clusters and the map: which projection, how long the job takes, and whether the page keeps up.

    python -m bench.maps [--vectors 100000] [--methods tsne,umap,pca] [--fit-limits 25000]
                         [--job 100000,200000] [--page] [--json OUT]

1. projection: ``--vectors`` Fashion-MNIST images (the 70,000 of both splits, then jittered copies of
   them up to the count) as 64-d vectors (their pixels' first 64 principal components), projected to
   the plane by each of ``--methods`` (``ranking.projection.project``, both cores), and by t-SNE fitted
   on ``--fit-limits`` of them with the rest placed by their neighbours (the path above
   ``MAP_FIT_LIMIT``). Quality is how well the plane keeps neighbourhoods: the accuracy of a
   10-nearest-neighbour vote on the clothing labels, in the plane, against the same vote in the 64-d space;
   k-means (``ranking.projection.kmeans``) is timed and scored by purity (the share of each cluster's
   commonest label).
2. job: in a scratch database, for each size of ``--job``, that many clustered synthetic 256-d vectors as a
   version's embeddings (``bench.search``'s generator), its HNSW index built, and the whole map job run in
   this process (``map_start`` + ``map_compute``: reading, k-means, t-SNE, storing the points). Above
   ``MAP_FIT_LIMIT`` t-SNE is fitted on a sample and the rest placed: the part that grows with the library.
3. page (``--page``, with the largest job's map; above 100,000 points the page draws a sample of 100,000): ``manage.py serve`` on that database, and headless Chromium on
   /map/: the first contentful paint, the first frame with points, the points API's time, and the draw
   time of each frame while the real mouse zooms and drags it over the 100,000 points (``window.mapStats``,
   map.js's own timings: a frame within 16 ms keeps 60 frames a second).

The last line printed is the JSON summary.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000, help="Fashion-MNIST vectors to project (0: skip)")
    parser.add_argument("--methods", default="tsne,umap,pca")
    parser.add_argument("--fit-limits", default="25000", help="t-SNE fitted on this many, the rest placed ('' skips)")
    parser.add_argument("--job", default="100000,200000", help="sizes for the map job ('' skips); above "
                        "MAP_FIT_LIMIT (100,000) the rest are placed, as at a million")
    parser.add_argument("--page", action="store_true", help="measure the map page on the job's map")
    parser.add_argument("--port", type=int, default=8871)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the summary here")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fashion_vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from bench.fashion_mnist import load
    from ranking.projection import principal_components

    (a, la), (b, lb) = load("train"), load("t10k")
    pixels = np.concatenate([a, b]).reshape(len(a) + len(b), -1).astype(np.float32) / 255
    labels = np.concatenate([la, lb])
    vectors = principal_components(pixels, 64, seed=seed)
    if n <= len(vectors):
        return vectors[:n], labels[:n]
    rng = np.random.default_rng(seed)
    extra = rng.choice(len(vectors), n - len(vectors))
    jitter = rng.normal(0, 0.05, (len(extra), vectors.shape[1])).astype(np.float32)
    return np.concatenate([vectors, vectors[extra] + jitter]), np.concatenate([labels, labels[extra]])


def knn_accuracy(points: np.ndarray, labels: np.ndarray, seed: int, queries: int = 5000) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(seed)
    asked = rng.choice(len(points), min(queries, len(points) // 2), replace=False)
    rest = np.setdiff1d(np.arange(len(points)), asked)
    return float(KNeighborsClassifier(10).fit(points[rest], labels[rest]).score(points[asked], labels[asked]))


def measure_projection(args) -> dict:
    from ranking.projection import cluster_count_auto, kmeans, project

    vectors, labels = fashion_vectors(args.vectors, args.seed)
    threads = os.cpu_count() or 1
    out = {"vectors": len(vectors), "knn_accuracy_64d": round(knn_accuracy(vectors, labels, args.seed), 4),
           "methods": []}
    log(f"{len(vectors):,} vectors; 10-NN label accuracy in 64-d: {out['knn_accuracy_64d']:.3f}")
    runs = [(m, len(vectors)) for m in args.methods.split(",") if m]
    runs += [("tsne", int(limit)) for limit in args.fit_limits.split(",") if limit and int(limit) < len(vectors)]
    for method, fit_limit in runs:
        start = time.perf_counter()
        xy, fitted, used = project(vectors, method=method, seed=args.seed, fit_limit=fit_limit, threads=threads)
        seconds = time.perf_counter() - start
        row = {"method": used, "fitted": fitted, "seconds": round(seconds, 1),
               "knn_accuracy_2d": round(knn_accuracy(xy, labels, args.seed), 4)}
        out["methods"].append(row)
        log(f"{used} fitted on {fitted:,}: {seconds:.1f} s, 10-NN accuracy in the plane {row['knn_accuracy_2d']:.3f}")
    k = cluster_count_auto(len(vectors))
    start = time.perf_counter()
    clusters, _ = kmeans(vectors, k, seed=args.seed)
    seconds = time.perf_counter() - start
    purity = sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters)) / len(labels)
    out["kmeans"] = {"clusters": k, "seconds": round(seconds, 1), "purity": round(float(purity), 4)}
    log(f"k-means, {k} clusters: {seconds:.1f} s, purity {purity:.3f}")
    return out


def measure_job(n: int, seed: int) -> dict:
    from django.conf import settings

    from bench.search import clustered_vectors, default_model_version, library_empty, load_library
    from imagesearch.services.library import collection_get_or_create
    from ranking.models import EmbeddingMap
    from ranking.services.criteria import criterion_default
    from ranking.services.embeddings import index_build
    from ranking.services.maps import map_compute, map_start

    library_empty()
    rng = np.random.default_rng(seed)
    vectors, _, _ = clustered_vectors(n, 256, 100, 16, rng)
    version = default_model_version(criterion_default(), Path(settings.RANKING_MODELS_DIR), 256)
    load_library(vectors, version.pk, collection_get_or_create(name="Bench").pk)
    index_build(version=version)  # the pages list the versions that can serve
    start = time.perf_counter()
    embedding_map = map_start(version=version, dispatch=False)
    map_compute(map_id=embedding_map.pk)
    seconds = time.perf_counter() - start
    embedding_map = EmbeddingMap.objects.select_related("job").get(pk=embedding_map.pk)
    log(f"map job, {n:,} vectors: {seconds:.1f} s ({embedding_map.job.message})")
    return {"vectors": n, "seconds": round(seconds, 1), "clusters": embedding_map.cluster_count,
            "method": embedding_map.method, "message": embedding_map.job.message, "map_id": embedding_map.pk,
            "version_id": version.pk}


def interact(page, steps: int = 120) -> list[float]:
    """Zoom in and out at the canvas's centre, then drag it around, with the real mouse; returns map.js's draw
    time of each frame drawn meanwhile (ms)."""
    box = page.locator("#map-canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate("() => { window.mapStats.drawMs.length = 0; }")
    page.mouse.move(cx, cy)
    for i in range(steps // 2):
        page.mouse.wheel(0, -120 if i < steps // 4 else 120)
        page.wait_for_timeout(16)
    page.mouse.down()
    for i in range(steps // 2):
        page.mouse.move(cx + 150 * np.sin(i / 6), cy + 100 * np.cos(i / 6))
        page.wait_for_timeout(16)
    page.mouse.up()
    page.wait_for_timeout(200)
    return page.evaluate("() => window.mapStats.drawMs.slice()")


def measure_page(map_info: dict, port: int, work: Path, env: dict) -> dict:
    import urllib.request

    from playwright.sync_api import sync_playwright

    password = "bench-maps-password"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port), "--web-workers", "2"],
        env={**env, "IMAGESEARCH_ADMIN_PASSWORD": password, "MAP_AUTO": "false", "LOG_LEVEL": "WARNING"},
        stdout=open(work / "serve.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/accounts/login/", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/accounts/login/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "login" not in url)
            start = time.perf_counter()
            page.request.get(f"{base}/api/maps/{map_info['map_id']}/points/?limit=100000")
            points_api_s = time.perf_counter() - start
            runs = []
            for _ in range(3):  # the first load warms the server's caches; report each
                page.goto(f"{base}/map/?version={map_info['version_id']}")
                page.wait_for_function("() => window.mapStats && window.mapStats.firstDrawMs !== null", timeout=60_000)
                paint = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
                runs.append({"first_contentful_paint_ms": round(paint or 0), "first_points_ms":
                             round(page.evaluate("() => window.mapStats.firstDrawMs")),
                             "points_drawn": page.evaluate("() => window.mapStats.pointsDrawn")})
            draw_ms = interact(page)
            browser.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    draw = np.array(draw_ms) if draw_ms else np.zeros(1)
    out = {"points_api_s": round(points_api_s, 3), "loads": runs, "frames": len(draw_ms),
           "draw_ms_p50": round(float(np.percentile(draw, 50)), 1), "draw_ms_p95": round(float(np.percentile(draw, 95)), 1),
           "draw_ms_max": round(float(draw.max()), 1)}
    log(f"page: {out}")
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    from bench.ingest import scratch_django, summary_print

    summary: dict = {"cpus": os.cpu_count()}
    if args.vectors:
        summary["projection"] = measure_projection(args)
    if args.job.strip():
        with scratch_django("bench_maps") as (env, work):
            summary["job"] = [measure_job(int(n), args.seed) for n in args.job.split(",") if n]
            if args.page and summary["job"]:
                from django.db import connections

                connections.close_all()  # the server's processes use the database now
                summary["page"] = measure_page(summary["job"][-1], args.port, work, env)
    return summary_print(summary, args.json)


if __name__ == "__main__":
    main()
