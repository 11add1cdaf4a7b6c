"""Django's Redis cache, with one client object per pool instead of one per operation.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` on every cache call.
Building one fills its table of about 170 response callbacks: in a profile of
POST /api/orders/, the two throttle calls' clients cost more CPU than any of the order's
own statements. A ``redis.Redis`` is safe to share between threads (each command takes a
connection from the pool), and the pool itself starts afresh in a forked process, so one
client per pool serves every call. Everything else is Django's backend.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # The private helpers are Django's own (django-stubs leaves them out).
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
            client = self._clients[index] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
