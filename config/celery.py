"""The Celery application shared by web, workers and beat."""

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("backoffice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# One beat per database: a second one waits on the first's lock (infrastructure/beat.py).
import infrastructure.beat  # noqa: E402, F401

#: The task beat sends every few seconds: its publication is beat's sign of life.
SWEEP_TASK = "sagas.sweep"


@signals.worker_init.connect
def _start_worker_exporter(**_: Any) -> None:
    """Serve the worker's series (its prefork children's included) on WORKER_METRICS_PORT."""
    port = os.environ.get("WORKER_METRICS_PORT", "").strip()
    if port:
        from infrastructure.metrics import worker_exporter_start

        worker_exporter_start(
            port=int(port), addr=os.environ.get("WORKER_METRICS_ADDR", "127.0.0.1")
        )


@signals.worker_process_shutdown.connect
def _forget_worker_child(pid: int | None = None, **_: Any) -> None:
    from infrastructure.metrics import worker_process_exited

    worker_process_exited(pid or os.getpid())


@signals.after_task_publish.connect
def _beat_seen(sender: str | None = None, **_: Any) -> None:
    if sender == SWEEP_TASK:
        from infrastructure.heartbeats import BEAT, heartbeat

        heartbeat(BEAT)
