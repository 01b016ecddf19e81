"""Per-client rate limit on task submission, shared by every server process through Redis."""

from __future__ import annotations

import time
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tasks_app.connection import get_broker
from tasks_app.core.broker import redis_errors

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'100/s' -> (100, 1); the period may be spelled out ('6000/minute')."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period[0]]


def client_ident(request: Request) -> str:
    """The authenticated principal, else the peer address."""
    user = request.user
    if user is not None and user.is_authenticated:
        prefix = "" if str(user.pk).startswith("key:") else "user:"
        return f"{prefix}{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


class SubmitRateThrottle(BaseThrottle):
    """Fixed-window counter per client (``N/period``), one Redis round trip per request."""

    def __init__(self, rate: str) -> None:
        self.limit, self.period = parse_rate(rate)
        self.retry_after = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        """Count this request; refuse it past the limit of the current window."""
        now = time.time()
        window = int(now // self.period)
        broker = get_broker()
        key = broker.keys.rate_limit(client_ident(request), window)
        with redis_errors():
            pipe = broker.client.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, self.period + 1)
            count, _ = pipe.execute()
        self.retry_after = (window + 1) * self.period - now
        return int(count) <= self.limit

    def wait(self) -> float:
        """Seconds until the window resets."""
        return self.retry_after
