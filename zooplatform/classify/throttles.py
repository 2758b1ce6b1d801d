"""Throttles per volunteer and per IP address.

DRF's ``SimpleRateThrottle`` keeps every request time of the window in one cache entry, which it reads,
rewrites and pickles on each request: for a busy address that is thousands of floats per request,
and two concurrent requests can both pass. These count with one atomic ``incr`` per window instead
(Redis in production, the local-memory cache without it). Rates come from
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (``"300/min"``).
"""
from __future__ import annotations

import time

from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from zooplatform.core.redis_direct import direct

from .identity import SESSION_USER, SESSION_VOLUNTEER

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0].lower()]


def _count(keys: list[str], ttl: int) -> list[int]:
    """Increment each counter, creating it with expiry ``ttl``: one Redis round trip for all of them
    (Django's cache would make two calls per key, each building a new client), or the local-memory cache
    without Redis."""
    from . import queue

    r = queue.client()
    if r is not None:
        return direct(r).execute(*[c for key in keys for c in (("INCR", key), ("EXPIRE", key, ttl))])[::2]
    counts = []
    for key in keys:
        if cache.add(key, 1, ttl):
            counts.append(1)
            continue
        try:
            counts.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, ttl)
            counts.append(1)
    return counts


class FixedWindowThrottle(BaseThrottle):
    scope = ""

    def __init__(self):
        self.num_requests, self.duration = parse_rate(api_settings.DEFAULT_THROTTLE_RATES[self.scope])
        self._wait = 0.0

    def ident(self, request, view) -> str | None:
        raise NotImplementedError

    def key(self, request, view, now: float) -> str | None:
        ident = self.ident(request, view)
        return None if ident is None else f"throttle:{self.scope}:{ident}:{int(now // self.duration)}"

    def settle(self, count: int, now: float) -> bool:
        if count > self.num_requests:
            self._wait = (int(now // self.duration) + 1) * self.duration - now
            return False
        return True

    def allow_request(self, request, view) -> bool:
        now = time.time()
        key = self.key(request, view, now)
        return True if key is None else self.settle(_count([key], self.duration + 1)[0], now)

    def wait(self):
        return self._wait


class VolunteerThrottle(FixedWindowThrottle):
    """Per volunteer: the user, or the browser session of an anonymous volunteer."""

    scope = "volunteer"

    def ident(self, request, view):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"u{user.pk}"
        session = getattr(request, "session", None)
        if session is not None and session.get(SESSION_USER) is None and session.get(SESSION_VOLUNTEER):
            return f"v{session[SESSION_VOLUNTEER]}"
        return None  # a first request has no volunteer yet: the IP throttle covers it


class IPThrottle(FixedWindowThrottle):
    """Per client address (``X-Forwarded-For`` is trusted as far as ``NUM_PROXIES`` says)."""

    scope = "ip"

    def ident(self, request, view):
        return self.get_ident(request)


class ThrottledView:
    """Mixin for a DRF view throttled per volunteer and per IP with one counter round trip for both."""

    throttle_classes = [VolunteerThrottle, IPThrottle]

    def check_throttles(self, request):
        now = time.time()
        throttles = self.get_throttles()
        keyed = [(t, t.key(request, self, now)) for t in throttles]
        keyed = [(t, k) for t, k in keyed if k is not None]
        if not keyed:
            return
        counts = _count([k for _, k in keyed], max(t.duration for t, _ in keyed) + 1)
        waits = [t.wait() for (t, _), c in zip(keyed, counts) if not t.settle(c, now)]
        if waits:
            self.throttled(request, max(waits))
