"""A soak of the default install: everything used together for a while, as a small team would.

    python -m bench.soak [--minutes 60] [--port 8765]

In a fresh data folder, with the embedded defaults (PostgreSQL, Redis: no DATABASE_URL or
CELERY_BROKER_URL), it starts ``manage.py serve`` as a user does, creates a labeler and an
analyst, imports generated photos, and then, until the time is up:

- an admin keeps the Dashboard open (it polls the jobs and the workers by itself);
- a labeler answers a triplet with the arrow keys about every 1.5 s;
- an analyst searches with an uploaded photo about every 20 s;
- every 10 minutes another 100 photos are imported with ``import_images``.

At the end it stops ``serve`` with SIGINT and reads its log: workers lost (``serve`` restarts
them), fatal errors, tracebacks that are not a refused permission, and 5xx answers in the
access log; and it compares the labeler's key presses with the judgments stored. Only
loopback traffic; bounded in time; every process it started is stopped. Needs Chromium at
/usr/bin/chromium. The last line printed is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "soak-pass-123"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--photos", type=int, default=300, help="photos imported at the start")
    return p.parse_args(argv)


def _env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL")}
    env.update(IMAGESEARCH_DATA_DIR=str(work / "data"), DJANGO_SETTINGS_MODULE="imagesearch.settings",
               IMAGESEARCH_ADMIN_PASSWORD=PASSWORD)
    return env


def _manage(work: Path, *args: str, timeout: float = 900) -> str:
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=_env(work), capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def _login(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state()


def read_log(text: str) -> dict:
    """What went wrong, from serve's log (its own lines, the worker's and gunicorn's access log)."""
    tracebacks = [m.start() for m in re.finditer(r"Traceback \(most recent call last\)", text)]
    refused = sum("PermissionDenied" in text[t : t + 3000] for t in tracebacks)
    return {
        "workers_lost": len(re.findall(r"The worker process exited", text)),
        "web_restarts": len(re.findall(r"The web process exited", text)),
        "fatal": len(re.findall(r"Unrecoverable error|CRITICAL", text)),
        "tracebacks_other_than_refused_permission": len(tracebacks) - refused,
        "http_5xx": len(re.findall(r'" 5\d\d ', text)),
        "http_requests": len(re.findall(r'" \d\d\d ', text)),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    from bench.ingest import generate_photos
    from bench.serving import wait_for_http
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    base = f"http://127.0.0.1:{args.port}"
    log_path = work / "serve.log"
    server = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(args.port)], cwd=ROOT,
                              env=_env(work), stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    summary: dict = {"minutes": args.minutes, "work": str(work)}
    begun = time.monotonic()
    pressed = searches = search_failures = imports = 0
    try:
        wait_for_http(f"{base}/accounts/login/", server, timeout=300)
        _manage(work, "add_user", "soak-labeler", "--role", "labeler", "--password", PASSWORD)
        _manage(work, "add_user", "soak-analyst", "--role", "analyst", "--password", PASSWORD)
        generate_photos(work / "photos-0", args.photos, seed=1)
        _manage(work, "import_images", str(work / "photos-0"))
        imports = 1
        query = work / "query.jpg"
        query.write_bytes(next((work / "photos-0").glob("*.jpg")).read_bytes())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
            contexts = {name: browser.new_context(viewport={"width": 1280, "height": 900})
                        for name in ("admin", "soak-labeler", "soak-analyst")}
            pages = {name: ctx.new_page() for name, ctx in contexts.items()}
            for name, page in pages.items():
                page.set_default_timeout(60_000)
                _login(page, base, name)
            pages["admin"].goto(f"{base}/dashboard/")
            labeler, analyst = pages["soak-labeler"], pages["soak-analyst"]
            labeler.goto(f"{base}/label/")
            started = time.monotonic()
            next_search, next_import = started, started + 600
            keys = ["ArrowLeft", "ArrowRight", "ArrowDown"]
            while time.monotonic() - started < args.minutes * 60:
                if labeler.locator("#triplet[aria-busy=false] #query-frame img").count():
                    labeler.keyboard.press(keys[pressed % 3])
                    pressed += 1
                labeler.wait_for_timeout(1500)
                if time.monotonic() >= next_search:
                    next_search += 20
                    try:
                        analyst.goto(f"{base}/search/")
                        analyst.set_input_files("#query-file", str(query))
                        analyst.wait_for_selector(".result", timeout=120_000)
                        searches += 1
                    except Exception:  # noqa: BLE001 - counted, the soak goes on
                        search_failures += 1
                if time.monotonic() >= next_import:
                    next_import += 600
                    folder = work / f"photos-{imports}"
                    generate_photos(folder, 100, seed=100 + imports)
                    _manage(work, "import_images", str(folder))
                    imports += 1
            labeler.wait_for_timeout(3000)  # the last answers reach the server
            stats = labeler.evaluate("async () => (await fetch('/api/labeling/stats/')).json()")
            browser.close()
        summary.update(judgments=stats)
    except BaseException as exc:  # reported with what was measured until then
        summary["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        summary.update(pressed=pressed, searches=searches, search_failures=search_failures, imports=imports,
                       seconds=round(time.monotonic() - begun, 1))
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        summary["serve_exit_code"] = server.returncode
        summary.update(read_log(log_path.read_text(errors="replace")))
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
