"""GET /api/health/ answers 503 and names what is down: the database, then the broker, for real.

The lab's web process (gunicorn, on private PostgreSQL and Redis) is asked while one server is
stopped, then again once it is back; the machine's shared servers are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from lab.servers import Lab, LabError
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def health(lab: Lab) -> tuple[int, dict[str, Any]]:
    response = requests.get(lab.base_url + "/api/health/", timeout=30)
    return response.status_code, response.json()


@contextmanager
def postgres_down(lab: Lab) -> Iterator[None]:
    """Crash the lab's PostgreSQL for the block, then start it again on the same port."""
    port = lab.postgres.running_port()
    lab.postgres.stop_immediately()
    try:
        yield
    finally:
        if port is not None:
            lab.postgres.preferred_port = port
        lab.postgres.start()
        if lab.postgres.running_port() != port:
            raise LabError("PostgreSQL came back on another port")


@contextmanager
def redis_down(lab: Lab) -> Iterator[None]:
    """SIGKILL the lab's Redis for the block, then start it again (same port, same data)."""
    lab.redis.kill()
    try:
        yield
    finally:
        lab.redis.start()


def test_health_is_200_with_both_servers_up(lab: Lab) -> None:
    status, body = health(lab)

    assert status == 200, body
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "broker": "ok",
    }


def test_health_is_503_naming_the_database_while_postgres_is_down(lab: Lab) -> None:
    with postgres_down(lab):
        status, body = health(lab)

    assert status == 503, body
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "down"
    assert body["checks"]["database"]["error"]
    assert body["checks"]["broker"]["status"] == "ok"
    # The web reconnects by itself once the server is back (its next checks find it).
    wait_for(lambda: health(lab)[0] == 200, timeout=60, message="health to be 200 again")


def test_health_is_503_naming_the_broker_while_redis_is_down(lab: Lab) -> None:
    with redis_down(lab):
        status, body = health(lab)

    assert status == 503, body
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["status"] == "ok"
    wait_for(lambda: health(lab)[0] == 200, timeout=60, message="health to be 200 again")
