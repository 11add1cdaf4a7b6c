"""Fixtures that start real processes for tests (registered in the root conftest.py)."""
