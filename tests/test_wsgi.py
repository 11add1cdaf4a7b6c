"""The WSGI entry point loads the URLconf at import and freezes what it loaded (gc.freeze)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import gc, sys
import config.wsgi
print(gc.get_freeze_count(), "orders.api" in sys.modules, flush=True)
"""


@pytest.mark.internals
def test_importing_the_wsgi_application_freezes_the_loaded_objects() -> None:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings")
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    frozen, views_loaded = probe.stdout.split()
    # Django, DRF and the project's modules: far more than a bare interpreter's objects.
    assert int(frozen) > 50_000
    assert views_loaded == "True"
