"""Settings for the test suite: the project settings with testing switched on.

Tests still run against real PostgreSQL and Redis (DATABASE_URL / REDIS_URL, or the embedded
servers ``make test`` starts); only what makes no sense in a test run changes here.
"""

import os

os.environ.setdefault("BACKOFFICE_TESTING", "1")
# Close connections after each request: the live server's request threads would otherwise
# leave theirs open and keep the test database from being dropped at the end of the run.
os.environ.setdefault("CONN_MAX_AGE", "0")

from config.settings import *  # noqa: F403

# Each test session's messages go to a queue of its own (tests/support/worker.py) and its
# worker consumes that queue alone: the webhooks' tasks follow the default queue there.
CELERY_TASK_ROUTES = {}
WEBHOOK_RETRY_BASE_SECONDS = 0.5  # tests see a retry soon
# Charts drawn afresh on every render: each test sees its own rows, never an earlier test's
# (the cache itself is tested with the setting overridden).
DASHBOARD_CHARTS_CACHE_SECONDS = 0.0

# The flush between transactional tests has to get past the trigger that refuses TRUNCATE on
# events (tests/support/pgflush/base.py says how, and why nothing in the schema allows it).
DATABASES["default"]["ENGINE"] = "tests.support.pgflush"  # noqa: F405
