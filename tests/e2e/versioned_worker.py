"""A Celery app for one test's worker: the release after a saga definition changed.

``celery -A tests.e2e.versioned_worker worker`` runs the project's app (``config.celery``)
with the settings' ``SAGA_DEFINITIONS`` edited as that release's code would list them:
``VERSIONED_DEFINITIONS`` (comma-separated ``v1``/``v2``) says which versions of
``test.versioned`` it registers. ``v1,v2`` is the release done right (the old version kept
while sagas still use it); ``v2`` alone is one that dropped version 1 too soon.
"""

from __future__ import annotations

import os

from django.conf import settings

from config.celery import app

__all__ = ["app"]

_PATHS = {
    "v1": "sagas.testing.sagas.VERSIONED_V1",
    "v2": "sagas.testing.sagas.VERSIONED_V2",
}

# Before any task runs (the registry reads the list once, lazily), in the parent process, so
# every pool process forked from it lists the same.
settings.SAGA_DEFINITIONS = [
    *(path for path in settings.SAGA_DEFINITIONS if path not in _PATHS.values()),
    *(_PATHS[v] for v in os.environ.get("VERSIONED_DEFINITIONS", "v1,v2").split(",")),
]
