"""WSGI entry point (gunicorn config.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Load the URLconf (and with it every view, serializer and schema module) now rather than on
# the first request, then move everything loaded so far out of the collector's sight: those
# objects live as long as the process. A full collection then walks only what requests
# create, which shortens the pauses a full collection makes under load
# (docs/performance.md).
get_resolver().url_patterns  # noqa: B018
gc.freeze()
