"""Sagas for the engine's own tests and benchmark, installed only when testing or benchmarking.

``config/settings.py`` adds this app and its definitions when ``TESTING`` or ``SAGA_TESTING``
is on, so the tables its participants write to exist in test and benchmark databases only.
"""
