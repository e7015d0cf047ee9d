"""Ingest benchmark: end-to-end import rate beside the bare decode+thumbnail rate.

    python -m bench.ingest [--n 2000] [--folder DIR] [--workers 2] [--modes celery,inline]

Generates N 1024×768 JPEG photos (or takes --folder), then in one run measures:
  * reference: one process reading each file and running the same decode+thumbnail
    code the importer uses (imagesearch.imaging.decode_image), nothing else;
  * celery: `manage.py import_images` with a real Celery worker (--workers processes)
    on a scratch database and a scratch broker, wall time from command start to exit;
  * inline: `manage.py import_images --inline` (one process) on another scratch database.
The last line printed is a JSON summary. The scratch databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate_photos(folder: Path, n: int, seed: int = 0) -> None:
    """Photo-like JPEGs: smooth random structure plus fine grain, ~100–250 KB each."""
    from PIL import Image, ImageFilter

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    grains = [Image.effect_noise((1024, 768), 24).convert("RGB") for _ in range(8)]
    for i in range(n):
        small = Image.frombytes("RGB", (16, 12), bytes(rng.randrange(256) for _ in range(16 * 12 * 3)))
        im = small.resize((1024, 768), Image.Resampling.BICUBIC)
        im = Image.blend(im, grains[i % len(grains)], 0.15).filter(ImageFilter.SHARPEN)
        im.save(folder / f"photo_{i:06d}.jpg", quality=90)


def reference_rate(files: list[Path]) -> float:
    from imagesearch.imaging import decode_image

    start = time.perf_counter()
    for path in files:
        decode_image(path.read_bytes(), max_pixels=150_000_000, thumbnail_size=256)
    return len(files) / (time.perf_counter() - start)


def scratch_database(name: str) -> tuple[str, str]:
    """Create database ``name``; returns (its URL, an admin URL to drop it)."""
    import psycopg

    if os.environ.get("DATABASE_URL"):
        from urllib.parse import urlsplit, urlunsplit

        base = urlsplit(os.environ["DATABASE_URL"])
        admin = urlunsplit(base._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return urlunsplit(base._replace(path=f"/{name}")), admin
    from imagesearch.embedded_db import start_embedded_postgres

    data_dir = Path(os.environ.get("IMAGESEARCH_DATA_DIR", ROOT / "var")).resolve()
    url = start_embedded_postgres(data_dir, database=name)
    return url, url.replace(f"/{name}?", "/postgres?")


@contextlib.contextmanager
def scratch_django(prefix: str, **environment: str):
    """In this process: a scratch database and data folder, Django set up on them and migrated, the embedded
    Redis running (the cache); yields the environment (for servers and workers started on the same database)
    and the folder. Both go on leaving."""
    name = f"{prefix}_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix=f"{prefix.replace('_', '-')}-"))
    url, admin = scratch_database(name)
    env = {"DATABASE_URL": url, "IMAGESEARCH_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
           "RANKING_AUTO_TRAIN": "false", "MAP_AUTO": "false", **environment}
    os.environ.update(env)
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        if settings.EMBEDDED_REDIS:  # the cache and the broker, as a command has them
            from imagesearch.embedded_redis import redis_for_this_process

            redis_for_this_process(settings.EMBEDDED_REDIS_DIR)
        call_command("migrate", verbosity=0)
        yield {**os.environ}, work
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(admin, name)
        shutil.rmtree(work, ignore_errors=True)


def summary_print(summary: dict, json_path: str | None) -> dict:
    """The benchmark's last line, the JSON summary; also written to ``json_path`` when given."""
    print(json.dumps(summary))
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2))
    return summary


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_import(folder: Path, mode: str, workers: int, chunk_size: int, work: Path,
               command_name: str = "import_images") -> dict:
    name = f"bench_ingest_{mode}_{os.getpid()}"
    url, admin = scratch_database(name)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "IMAGESEARCH_DATA_DIR": str(work / mode),  # its own broker folder, media and keys
        "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "LOG_LEVEL": "WARNING",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    worker = None
    try:
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        if mode == "celery":
            log = open(work / "worker.log", "w")
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--loglevel", "INFO",
                 "--concurrency", str(workers), "--queues", "default", "--hostname", f"bench-{os.getpid()}@%h"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 60
            while "ready." not in (work / "worker.log").read_text():
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError((work / "worker.log").read_text())
                time.sleep(0.2)
        command = [*manage, command_name, str(folder), "--chunk-size", str(chunk_size)]
        if mode == "inline":
            command.append("--inline")
        start = time.perf_counter()
        result = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "summary": result.stdout.strip().splitlines()[0]}
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="photos to generate")
    parser.add_argument("--folder", type=Path, help="import this folder instead of generated photos")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Celery worker processes")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--modes", default="celery,inline")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        folder = args.folder
        if folder is None:
            folder = work / "photos"
            t = time.perf_counter()
            generate_photos(folder, args.n)
            print(f"generated {args.n} 1024×768 JPEGs in {time.perf_counter() - t:.1f} s", flush=True)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        print(f"{len(files)} files, {size_mb:.0f} MB", flush=True)
        reference = reference_rate(files)
        print(f"reference (1 process, decode + thumbnail only): {reference:.1f} images/s", flush=True)
        summary = {"files": len(files), "megabytes": round(size_mb, 1), "cpus": os.cpu_count(),
                   "reference_images_per_s": round(reference, 1)}
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            outcome = run_import(folder, mode, args.workers, args.chunk_size, work)
            rate = len(files) / outcome["seconds"]
            label = f"{mode} ({args.workers} worker processes)" if mode == "celery" else "inline (1 process)"
            print(f"end-to-end {label}: {rate:.1f} images/s = {rate / reference:.0%} of reference "
                  f"[{outcome['summary']}]", flush=True)
            summary[f"{mode}_images_per_s"] = round(rate, 1)
            summary[f"{mode}_ratio"] = round(rate / reference, 3)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
