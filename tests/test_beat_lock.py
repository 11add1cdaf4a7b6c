"""A second Celery beat on the same database waits, and takes over when the first dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from infrastructure.beat import BEAT_LOCK_KEY
from lab.worker import database_url, delete_queue, stop_process_group
from tests.support.worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


class Beat:
    """A ``celery -A config beat`` process on the test database, its output in a file."""

    def __init__(self, tmp_path: Path, name: str, env: dict[str, str]) -> None:
        self.log = tmp_path / f"{name}.log"
        with self.log.open("wb") as out:
            command = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO"]
            self.process = subprocess.Popen(
                [*command, f"--schedule={tmp_path / name}-schedule"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def says(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")


@pytest.fixture
def beats(tmp_path: Path) -> Iterator[Any]:
    queue = f"beat-lock-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TEST_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.test_settings",
        DATABASE_URL=database_url(connection.settings_dict),
        CELERY_BROKER_URL=str(settings.CELERY_BROKER_URL),
        # What they schedule goes to a queue nobody reads.
        CELERY_QUEUE=queue,
        CELERY_SKIP_CHECKS="1",
        PYTHONUNBUFFERED="1",
    )
    started: list[Beat] = []

    def start(name: str) -> Beat:
        beat = Beat(tmp_path, name, env)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        stop_process_group(beat.process, timeout=10)
    delete_queue(queue)


def lock_holders() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            [BEAT_LOCK_KEY],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_a_second_beat_waits_while_the_first_lives_and_takes_over_when_it_dies(beats) -> None:
    first = beats("first")
    wait_for(lambda: first.says("holding the beat lock"), message="the first beat's lock")

    second = beats("second")
    wait_for(lambda: second.says("another beat holds the beat lock"), message="the second waits")

    assert not second.says("holding the beat lock")
    assert lock_holders() == 1

    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    wait_for(lambda: second.says("holding the beat lock"), message="the second takes over")
    assert lock_holders() == 1
