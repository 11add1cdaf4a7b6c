"""The test suite's PostgreSQL backend: Django's, with a flush that passes the event triggers."""
