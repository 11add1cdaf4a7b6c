"""Fixtures shared by every test package.

Tests run against real PostgreSQL and Redis. Fixtures that start real processes (a Celery
worker, a live server) live in ``tests/support`` and are registered here.
"""

pytest_plugins: list[str] = ["tests.support.worker"]
