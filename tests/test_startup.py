"""Commands that need no model start without torch (add_user took 16 s when everything imported it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
