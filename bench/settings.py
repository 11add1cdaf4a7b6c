"""Settings for benchmark runs: the project's settings with DEBUG off.

With DEBUG on, Django wraps every cursor to time and log each query, which would be measured
too. ``bench.database.use_bench_database`` points ``DATABASE_URL`` at the bench database
before these settings are read.
"""

import os

# Read the project settings as local work does (dev secret key, local hosts); DEBUG itself is
# switched off below, after the settings that depend on it have been computed.
os.environ.setdefault("DEBUG", "true")

from config.settings import *  # noqa: F403

DEBUG = False

# The project's URLs plus the API benchmark's trivial endpoint (bench/urls.py).
ROOT_URLCONF = "bench.urls"
