"""The Celery application shared by web, workers and beat."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("backoffice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# One beat per database: a second one waits on the first's lock (infrastructure/beat.py).
import infrastructure.beat  # noqa: E402, F401
