"""How long a labeler waits on the labeling page: answer → next triplet painted.

    python -m bench.labeling_page [--images 300] [--answers 200] [--interval-ms 400]

In a scratch database it imports ``--images`` generated 1024×768 photos, trains a
small autoencoder (so triplets come from active selection, as in production),
starts the whole app with ``manage.py serve`` (gunicorn + a Celery worker that
refills the queue), signs a labeler in to headless Chromium and answers
``--answers`` triplets with the arrow keys, one every ``--interval-ms`` (a fast
expert answers in about a second; a shorter interval is a stress test; 0 presses as fast as
the page allows: the next key as soon as the next triplet shows).

Measured in the page (``window.labelingSwitchTimes``): from each key press to the
next triplet's three images painted. The reference, in the same run: what a page
without prefetching would make the labeler wait — one ``POST /api/labeling/next/``
plus loading and decoding its three images — timed in the same browser. The last
line printed is the JSON summary, with the judgments stored and whether they are exactly the
key presses, in order (none lost, none twice). Needs Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.serving import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent

REFERENCE_JS = """async (count) => {
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const times = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const response = await fetch("/api/labeling/next/", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf}, body: JSON.stringify({count: 1})});
    const [t] = (await response.json()).triplets;
    if (!t) continue;  // the queue is being refilled
    await Promise.all([t.query, t.a, t.b].map((image) => {
      const img = new Image(); img.src = image.file_url + "?nocache=" + i; return img.decode();
    }));
    times.push(performance.now() - started);
    await fetch("/api/labeling/skip/", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf}, body: JSON.stringify({triplet: t.id})});
  }
  return times;
}"""


ANSWER_OF_KEY = {"ArrowLeft": "a", "ArrowRight": "b", "ArrowDown": "unsure"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--answers", type=int, default=200)
    p.add_argument("--interval-ms", type=int, default=400, help="pause between answers")
    p.add_argument("--reference", type=int, default=30, help="timed fetches without prefetching")
    return p.parse_args(argv)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(statistics.median(values), 1),
            "p95_ms": round(_percentile(values, 0.95), 1), "max_ms": round(max(values), 1)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from bench.ingest import drop_database, generate_photos, scratch_database

    work = Path(tempfile.mkdtemp(prefix="bench-labeling-"))
    name = f"bench_labeling_{os.getpid()}"
    url, admin = scratch_database(name)
    port = free_port()
    os.environ.update({
        "DATABASE_URL": url, "IMAGESEARCH_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "RANKING_AUTO_TRAIN": "0", "RANKING_AUTOENCODER_IMAGE_SIZE": "32", "RANKING_DEVICE": "cpu",
        "LABELING_GOLD_RATE": "0", "LOG_LEVEL": "WARNING", "IMAGESEARCH_ADMIN_PASSWORD": "bench-admin",
    })
    server = None
    summary: dict = {}
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        _prepare_library(work, args.images, generate_photos)
        from django.db import connections

        connections.close_all()
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--web-workers", "2", "--concurrency", "1"],
            cwd=ROOT, env=os.environ.copy(), stdout=open(work / "serve.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/accounts/login/", server)
        summary = _drive_browser(base, args)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        from django.db import connections

        stored = in_order = None
        try:
            from labeling.models import TripletJudgment

            rows = list(TripletJudgment.objects.filter(user__username="bench-labeler").order_by("pk")
                        .values_list("triplet_id", "answer"))
            stored = len(rows)
            # every key press stored once, in the order pressed, with the answer pressed
            in_order = rows == [tuple(pair) for pair in summary["pressed"]] if summary else None
        except Exception:  # noqa: BLE001 - the figures matter more than this check
            pass
        connections.close_all()
        drop_database(admin, name)
        shutil.rmtree(work, ignore_errors=True)
    summary["judgments_stored"] = stored
    summary["judgments_in_order"] = in_order
    summary.pop("pressed", None)
    print(json.dumps(summary))
    return summary


def _prepare_library(work: Path, n: int, generate_photos) -> None:
    from imagesearch.services.accounts import user_create
    from imagesearch.services.ingest import ingest_job_create, ingest_job_run
    from labeling.services.triplets import triplets_refill
    from ranking.models import ModelVersion
    from ranking.services.criteria import criterion_default
    from ranking.services.training import training_start, version_train

    photos = work / "photos"
    generate_photos(photos, n, seed=3)
    ingest_job_run(job_id=ingest_job_create(paths=[str(photos)], collection_name="Bench").pk, inline=True)
    criterion = criterion_default()
    version = version_train(version_id=training_start(
        criterion=criterion, kind="autoencoder", dispatch=False, hyperparameters={"epochs": 3}).pk, embed="inline")
    assert version.status == ModelVersion.Status.ACTIVE, version.error
    triplets_refill(criterion=criterion)  # what the worker keeps ready
    user_create(username="bench-labeler", password="bench-pass", roles=["labeler"])


def _drive_browser(base: str, args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    keys = ["ArrowLeft", "ArrowRight", "ArrowDown"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=username]", "bench-labeler")
        page.fill("input[name=password]", "bench-pass")
        page.press("input[name=password]", "Enter")
        page.wait_for_url(f"{base}/label/")
        page.wait_for_selector("#triplet[aria-busy=false] #query-frame img")
        started = time.monotonic()
        pressed: list[tuple[int, str]] = []  # (triplet, answer) in the order of the key presses
        for i in range(args.answers):
            current = page.locator("#triplet").get_attribute("data-triplet")
            page.keyboard.press(keys[i % 3])
            pressed.append((int(current), ANSWER_OF_KEY[keys[i % 3]]))
            # a function, not a string: the page's Content-Security-Policy forbids eval
            page.wait_for_function(f"() => document.getElementById('triplet').dataset.triplet !== '{current}'",
                                   timeout=60_000)
            page.wait_for_timeout(args.interval_ms)
        elapsed = time.monotonic() - started
        switch = page.evaluate("window.labelingSwitchTimes")
        page.wait_for_timeout(2000)  # the last answers reach the server
        reference = page.evaluate(REFERENCE_JS, args.reference)
        browser.close()
    with_prefetch, without = _summary(switch), _summary(reference)
    return {"answers": args.answers, "interval_ms": args.interval_ms,
            "answers_per_minute": round(60 * args.answers / elapsed, 1),
            "switch_with_prefetch": with_prefetch, "wait_without_prefetch": without,
            "switches_over_100_ms": sum(t > 100 for t in switch),
            "switches_over_1000_ms": sum(t > 1000 for t in switch), "pressed": pressed,
            "p50_ratio_without_to_with": round(without["p50_ms"] / max(with_prefetch["p50_ms"], 0.1), 1)}


if __name__ == "__main__":
    main()
