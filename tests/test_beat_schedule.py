"""Celery beat's schedule: the saga sweeper and the projections' catch-up, at the README's rates,
and the daily retention purge.

Read in a fresh process from the Celery app beat runs (``celery -A config beat``), so what is
checked is what beat sees, with the environment read afresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
import django
django.setup()
from config.celery import app
app.loader.import_default_modules()
def when(schedule):
    # Seconds for an interval; a crontab's fields (minute, hour, ...) for a time of day.
    return float(schedule) if isinstance(schedule, (int, float)) else str(schedule)
schedule = {
    name: [entry["task"], when(entry["schedule"]), entry["task"] in app.tasks]
    for name, entry in app.conf.beat_schedule.items()
}
print(json.dumps(schedule, sort_keys=True))
"""


def beat_schedule(**env: str) -> dict[str, list[object]]:
    """Return beat's schedule as {entry: [task, seconds or crontab, task known to the worker]}."""
    names = ("SAGA_SWEEP_INTERVAL_SECONDS", "PROJECTION_CATCH_UP_SECONDS")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.test_settings")
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    schedule: dict[str, list[object]] = json.loads(result.stdout.splitlines()[-1])
    return schedule


def test_beat_sweeps_sagas_and_catches_projections_up_every_5_seconds_by_default() -> None:
    assert beat_schedule() == {
        "sagas-sweep": ["sagas.sweep", 5.0, True],
        "eventstore-catch-up-projections": ["eventstore.catch_up_projections", 5.0, True],
        # WEBHOOK_RELAY_INTERVAL_SECONDS: a delivery exists and is sent within a quarter of a
        # second of its event's commit; WEBHOOK_INTERVAL_SECONDS: due retries every second.
        "webhooks-relay": ["webhooks.relay", 0.25, True],
        "webhooks-dispatch-due": ["webhooks.dispatch_due", 1.0, True],
        # IDEMPOTENCY_TTL_HOURS and the other retention settings, applied daily at 03:17.
        "purge-expired": [
            "backoffice.purge_expired",
            "<crontab: 17 3 * * * (m/h/dM/MY/d)>",
            True,
        ],
    }


def test_the_intervals_come_from_the_environment() -> None:
    schedule = beat_schedule(SAGA_SWEEP_INTERVAL_SECONDS="7", PROJECTION_CATCH_UP_SECONDS="11")

    assert schedule["sagas-sweep"][1] == 7.0
    assert schedule["eventstore-catch-up-projections"][1] == 11.0
