"""Django's Redis cache, with one Redis client per connection pool instead of one per call.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` on every cache operation; building
one (its response-callback table) cost more than the round trip itself, and the session store reads
the cache on every request. A ``redis.Redis`` over a pool is safe to share between threads, and its
pool reconnects by itself in a forked worker, so one per pool is enough. ``get``, the session store's
read on every request, goes over the thread's direct connection (:mod:`zooplatform.core.redis_direct`).
"""
from __future__ import annotations

from django.core.cache.backends import redis as django_redis

from .redis_direct import direct


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            if index not in self._pools:
                self._pools[index] = self._pool_class.from_url(self._servers[index], **self._pool_options)
            client = self._clients[index] = self._client(connection_pool=self._pools[index])
        return client

    def get(self, key, default):
        value = direct(self.get_client(key)).execute(("GET", key))[0]
        return default if value is None else self._serializer.loads(value)


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
