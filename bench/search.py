"""Search latency and recall: pgvector through the app's selector, FAISS HNSW and exact numpy, then HTTP.

    python -m bench.search --n 100000 [--dim 256] [--queries 200] [--ef 40,64,100,160,250,400] [--json OUT]

In a scratch database it:

1. makes ``--n`` clustered synthetic unit vectors at the production dimension
   (256, the deep-ranking default): ``--clusters`` centres, each point its centre
   plus a random combination of ``--intrinsic`` directions of its own cluster plus
   a little isotropic noise, so that neighbourhoods have the low intrinsic
   dimension of learned embeddings rather than the hopeless geometry of
   isotropic noise; queries are fresh draws from the same mixture;
2. loads them as library images with embeddings of an active model version
   (COPY), and builds that version's HNSW index with the app's own
   ``index_build`` and the production settings (``RANKING_HNSW_M``,
   ``RANKING_HNSW_EF_CONSTRUCTION``, overridable with --m and --ef-construction),
   recording build time and index size;
3. computes the exact top 10 of every query with numpy (brute force), and
   measures, for each ``hnsw.ef_search`` in --ef, recall@10 against it and the
   p50/p95 latency of ``ranking.selectors.nearest_images`` (the selector the page
   and the API call: SQL through Django plus loading the 10 Image rows);
4. beside it, on the same vectors: FAISS ``IndexHNSWFlat`` (same M and
   efConstruction, inner product on unit vectors, one thread per query, as
   PostgreSQL uses) for a range of efSearch, and exact numpy search of one
   query at a time; pgvector's latency is then compared with FAISS's at equal
   recall (the cheapest FAISS efSearch that reaches pgvector's recall), and in one
   figure, ``pgvector_vs_faiss_ratio``: the selector's p50 over FAISS's, each at its
   lowest setting reaching recall@10 0.95;
5. serves the app (``manage.py serve``, one web worker) with a randomly
   initialised default model (resnet18, 224 px, 256-d, fp32 on the CPU) as the
   active version, and times ``--http-requests`` searches through
   ``POST /api/search/``, each uploading a different 1024×768 JPEG (decode,
   validate, embed, search, respond), from a client on loopback.

The last line printed is the JSON summary. The scratch database and files are
removed at the end (kept with --keep-database).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="library vectors")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--intrinsic", type=int, default=12, help="directions of variation within a cluster")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="40,64,100,160,250,400", help="hnsw.ef_search values for pgvector")
    parser.add_argument("--faiss-ef", default="16,24,32,48,64,96,128,192,256,384,512", help="empty: no FAISS")
    parser.add_argument("--m", type=int, help="HNSW m (default: RANKING_HNSW_M)")
    parser.add_argument("--ef-construction", type=int, help="default: RANKING_HNSW_EF_CONSTRUCTION")
    parser.add_argument("--http-requests", type=int, default=40, help="0 skips the HTTP part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the summary here")
    parser.add_argument("--keep-database", action="store_true")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


# ------------------------------------------------------------------------------- vectors


def clustered_vectors(n: int, dim: int, clusters: int, intrinsic: int, rng: np.random.Generator,
                      centres: np.ndarray | None = None, bases: np.ndarray | None = None):
    """Unit vectors from a mixture of low-dimensional Gaussians; returns (vectors, centres, bases)."""
    if centres is None:
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        bases = rng.standard_normal((clusters, intrinsic, dim)).astype(np.float32) / np.sqrt(dim)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        which = rng.integers(0, clusters, m)
        z = rng.standard_normal((m, intrinsic)).astype(np.float32) * 0.6
        x = centres[which] + np.einsum("ni,nid->nd", z, bases[which])
        x += rng.standard_normal((m, dim)).astype(np.float32) * (0.02 / np.sqrt(dim))
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, centres, bases


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Row indices of each query's k nearest vectors by cosine (unit vectors: inner product)."""
    top = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 50):
        scores = queries[start:start + 50] @ vectors.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, 1).argsort(axis=1)[:, ::-1]
        top[start:start + 50] = np.take_along_axis(part, order, 1)
    return top


def recall(found: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e.tolist())) / len(e) for f, e in zip(found, exact)]))


# ------------------------------------------------------------------------------- loading


def library_empty() -> None:
    """Drop every version's index and all images, versions and jobs, ids starting again at 1 (between sizes)."""
    from django.db import connection

    from ranking.models import ModelVersion
    from ranking.services.embeddings import index_drop

    for old in ModelVersion.objects.exclude(index_name=""):
        index_drop(version=old)  # its partial index would outlive the rows, and ids start again at 1
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE imagesearch_image, ranking_modelversion, imagesearch_job RESTART IDENTITY CASCADE")


def load_library(vectors: np.ndarray, version_id: int, collection_id: int) -> None:
    """COPY the images (ids 1…n) and their embeddings: the vectors in pgvector's binary format."""
    from django.db import connection

    n, dim = vectors.shape
    now = time.strftime("%Y-%m-%d %H:%M:%S+00")
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY imagesearch_image (id, collection_id, file, thumbnail, sha256, file_size, width, height, format, "
            "media_type, original_name, source_path, label, metadata, created_at) FROM STDIN"
        ) as copy:
            for start in range(0, n, 50_000):
                copy.write("".join(
                    f"{i}\t{collection_id}\tv/{i}.jpg\tt/{i}.webp\t{i:064x}\t1000\t1024\t768\tJPEG\timage/jpeg\t"
                    f"vector_{i}.jpg\t\tc{i % 1000}\t{{}}\t{now}\n"
                    for i in range(start + 1, min(start + 50_000, n) + 1)))
        cursor.execute("SELECT setval(pg_get_serial_sequence('imagesearch_image', 'id'), %s)", [n])
        row = np.dtype([("fields", ">i2"), ("len1", ">i4"), ("image", ">i8"), ("len2", ">i4"), ("version", ">i8"),
                        ("len3", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vector", ">f4", (dim,))])
        with cursor.copy("COPY ranking_embedding (image_id, version_id, vector) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(b"PGCOPY\n\xff\r\n\0" + struct.pack(">ii", 0, 0))
            for start in range(0, n, 50_000):
                chunk = vectors[start:start + 50_000]
                rows = np.zeros(len(chunk), dtype=row)
                rows["fields"], rows["len1"], rows["len2"], rows["len3"] = 3, 8, 8, 4 + 4 * dim
                rows["image"] = np.arange(start + 1, start + 1 + len(chunk))
                rows["version"], rows["dim"], rows["vector"] = version_id, dim, chunk
                copy.write(rows.tobytes())
            copy.write(struct.pack(">h", -1))
        cursor.execute("ANALYZE imagesearch_image")
        cursor.execute("ANALYZE ranking_embedding")


def default_model_version(criterion, models_dir: Path, dim: int):
    """An active deep-ranking version with the default network, randomly initialised (nothing downloaded)."""
    from ranking.checkpoints import save_model
    from ranking.models import ModelVersion
    from ranking.nets import build_model

    params = {"backbone": "resnet18", "embedding_dim": dim, "image_size": 224, "weights": None}
    model = build_model("ranking", **params)
    name = "bench-search-resnet18.pt"
    sha = save_model(model, models_dir / name, kind="ranking", params=params)
    return ModelVersion.objects.create(criterion=criterion, kind="ranking", status=ModelVersion.Status.ACTIVE,
                                       hyperparameters=params, weights_file=name, weights_sha256=sha,
                                       embedding_dim=dim)


# ------------------------------------------------------------------------------- measuring


def measure_pgvector(version, queries: np.ndarray, exact_ids: np.ndarray, ef_values: list[int]) -> list[dict]:
    from ranking.selectors import nearest_images

    for q in queries:  # warm the index and table pages into memory
        nearest_images(version=version, vector=q, k=10, ef_search=max(ef_values))
    out = []
    for ef in ef_values:
        found, seconds = [], []
        for q in queries:
            start = time.perf_counter()
            hits = nearest_images(version=version, vector=q, k=10, ef_search=ef)
            seconds.append(time.perf_counter() - start)
            found.append([h.image.pk for h in hits])
        out.append({"ef_search": ef, "recall_at_10": round(recall(found, exact_ids), 4), **percentiles(seconds)})
        log(f"pgvector ef_search={ef}: {out[-1]}")
    return out


def measure_faiss(vectors: np.ndarray, queries: np.ndarray, exact_rows: np.ndarray, m: int, ef_construction: int,
                  ef_values: list[int]) -> dict:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    start = time.perf_counter()
    index.add(vectors)
    build = time.perf_counter() - start
    log(f"FAISS HNSW built in {build:.1f} s")
    faiss.omp_set_num_threads(1)
    points = []
    for ef in ef_values:
        index.hnsw.efSearch = ef
        found, seconds = [], []
        for q in queries:
            t = time.perf_counter()
            _, rows = index.search(q[None], 10)
            seconds.append(time.perf_counter() - t)
            found.append(rows[0].tolist())
        points.append({"ef_search": ef, "recall_at_10": round(recall(found, exact_rows), 4), **percentiles(seconds)})
        log(f"FAISS efSearch={ef}: {points[-1]}")
    return {"build_s": round(build, 1), "points": points}


def measure_numpy(vectors: np.ndarray, queries: np.ndarray, count: int = 30) -> dict:
    seconds = []
    for q in queries[:count]:
        start = time.perf_counter()
        scores = vectors @ q
        top = np.argpartition(-scores, 10)[:10]
        top[np.argsort(-scores[top])]
        seconds.append(time.perf_counter() - start)
    return percentiles(seconds)


def at_equal_recall(pg: list[dict], faiss_points: list[dict]) -> list[dict]:
    """For each pgvector point, FAISS's cheapest efSearch with at least its recall, and the latency ratio."""
    out = []
    for point in pg:
        match = next((f for f in sorted(faiss_points, key=lambda f: f["p50_ms"])
                      if f["recall_at_10"] >= point["recall_at_10"]), None)
        out.append({"ef_search": point["ef_search"], "recall_at_10": point["recall_at_10"],
                    "faiss_ef_search": match and match["ef_search"],
                    "faiss_p50_ms": match and match["p50_ms"],
                    "pgvector_over_faiss_p50": match and round(point["p50_ms"] / match["p50_ms"], 2)})
    return out


def pgvector_vs_faiss_ratio(pg: list[dict], faiss_points: list[dict], target: float = 0.95) -> dict:
    """Issue 18's one figure: the selector's p50 over FAISS's, each at its lowest ``ef_search`` that reaches
    recall@10 ``target``, from the same run (``ratio`` None when either never reaches it)."""
    def lowest(points: list[dict]) -> dict | None:
        return next((p for p in sorted(points, key=lambda p: p["ef_search"]) if p["recall_at_10"] >= target), None)

    ours, theirs = lowest(pg), lowest(faiss_points)
    return {"target_recall_at_10": target,
            "pgvector": ours and {k: ours[k] for k in ("ef_search", "recall_at_10", "p50_ms")},
            "faiss": theirs and {k: theirs[k] for k in ("ef_search", "recall_at_10", "p50_ms")},
            "ratio": round(ours["p50_ms"] / theirs["p50_ms"], 2) if ours and theirs else None}


def measure_http(work: Path, count: int) -> dict:
    """Start the app and time POST /api/search/ with freshly generated 1024×768 JPEG uploads."""
    from django.db import connections
    from rest_framework.authtoken.models import Token

    from bench.ingest import generate_photos
    from bench.serving import free_port, wait_for_http
    from imagesearch.services.accounts import user_create

    user, _ = user_create(username=f"bench-analyst-{uuid.uuid4().hex[:6]}", password="x" * 16, roles=["analyst"])
    token = Token.objects.create(user=user).key
    photos = work / "photos"
    warm = 3
    generate_photos(photos, count + warm, seed=12345)
    files = sorted(photos.glob("*.jpg"))
    connections.close_all()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--web-workers", "1", "--no-worker"],
        cwd=ROOT, env=os.environ.copy(), stdout=open(work / "serve.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/accounts/login/", server)
        seconds, sizes = [], []
        for i, path in enumerate(files):
            data = path.read_bytes()
            body, content_type = _multipart({"k": "10"}, "image", path.name, data)
            request = urllib.request.Request(f"{base}/api/search/", data=body, method="POST", headers={
                "Authorization": f"Token {token}", "Content-Type": content_type})
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
            elapsed = time.perf_counter() - start
            assert len(answer["results"]) == 10 and answer["query"]["token"], answer
            if i >= warm:
                seconds.append(elapsed)
                sizes.append(len(data))
        return {"requests": len(seconds), "jpeg_kb_mean": round(float(np.mean(sizes)) / 1024, 1),
                **percentiles(seconds)}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _multipart(fields: dict, file_field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
              "Content-Type: image/jpeg\r\n\r\n".encode())
    out.write(data)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


# ------------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    args = parse_args(argv)
    from bench.ingest import drop_database, scratch_database

    name = f"bench_search_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    url, admin = scratch_database(name)
    os.environ.update({
        "DATABASE_URL": url, "IMAGESEARCH_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "RANKING_AUTO_TRAIN": "false", "RANKING_AUTO_ACTIVATE": "false",
    })
    if args.m:
        os.environ["RANKING_HNSW_M"] = str(args.m)
    if args.ef_construction:
        os.environ["RANKING_HNSW_EF_CONSTRUCTION"] = str(args.ef_construction)
    try:
        summary = run(args, work)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_database:
            drop_database(admin, name)
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


def run(args: argparse.Namespace, work: Path) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from imagesearch.services.library import collection_get_or_create
    from ranking.services.criteria import criterion_default
    from ranking.services.embeddings import index_build

    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(args.seed)
    log(f"{args.n:,} vectors of dimension {args.dim} in {args.clusters} clusters …")
    vectors, centres, bases = clustered_vectors(args.n, args.dim, args.clusters, args.intrinsic, rng)
    queries, _, _ = clustered_vectors(args.queries, args.dim, args.clusters, args.intrinsic, rng, centres, bases)
    start = time.perf_counter()
    exact_rows = exact_top(vectors, queries)
    exact_s = time.perf_counter() - start
    version = default_model_version(criterion_default(), Path(settings.RANKING_MODELS_DIR), args.dim)
    start = time.perf_counter()
    load_library(vectors, version.pk, collection_get_or_create(name="Bench").pk)
    load_s = time.perf_counter() - start
    log(f"loaded in {load_s:.1f} s; building the HNSW index (m={settings.RANKING_HNSW_M}, "
        f"ef_construction={settings.RANKING_HNSW_EF_CONSTRUCTION}) …")
    start = time.perf_counter()
    index = index_build(version=version)
    build_s = time.perf_counter() - start
    version.refresh_from_db()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass), pg_relation_size('ranking_embedding')", [index])
        index_bytes, table_bytes = cursor.fetchone()
    log(f"index built in {build_s:.1f} s, {index_bytes / 2**20:.0f} MiB")

    ef_values = [int(x) for x in args.ef.split(",")]
    pg = measure_pgvector(version, queries, exact_rows + 1, ef_values)  # image id = row + 1
    faiss_result = measure_faiss(vectors, queries, exact_rows, settings.RANKING_HNSW_M,
                                 settings.RANKING_HNSW_EF_CONSTRUCTION,
                                 [int(x) for x in args.faiss_ef.split(",")]) if args.faiss_ef else None
    numpy_result = measure_numpy(vectors, queries)
    log(f"numpy exact, one query at a time: {numpy_result}")
    http = None
    if args.http_requests:
        http = measure_http(work, args.http_requests)
        log(f"HTTP search with an uploaded 1024×768 JPEG: {http}")
    return {
        "n": args.n, "dim": args.dim, "clusters": args.clusters, "intrinsic": args.intrinsic,
        "queries": args.queries, "cpus": os.cpu_count(),
        "hnsw": {"m": settings.RANKING_HNSW_M, "ef_construction": settings.RANKING_HNSW_EF_CONSTRUCTION,
                 "default_ef_search": settings.RANKING_HNSW_EF_SEARCH},
        "load_s": round(load_s, 1), "index_build_s": round(build_s, 1),
        "index_mib": round(index_bytes / 2**20, 1), "table_mib": round(table_bytes / 2**20, 1),
        "exact_batch_s": round(exact_s, 2),
        "pgvector": pg, "faiss_hnsw": faiss_result, "numpy_exact": numpy_result,
        "pgvector_vs_faiss_at_equal_recall": at_equal_recall(pg, faiss_result["points"]) if faiss_result else None,
        "pgvector_vs_faiss_ratio": pgvector_vs_faiss_ratio(pg, faiss_result["points"]) if faiss_result else None,
        "http": http,
    }


if __name__ == "__main__":
    main()
