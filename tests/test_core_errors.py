"""Redis replies become the core's typed exceptions (``scripts.translate``)."""

from __future__ import annotations

import pytest
import redis

from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.scripts import translate


@pytest.mark.parametrize("reply", ["READONLY You can't write against a read only replica.",
                                   "MISCONF Redis is configured to save RDB snapshots",
                                   "OOM command not allowed when used memory > 'maxmemory'."])
def test_replies_of_a_redis_that_cannot_write_now_mean_unavailable(reply: str) -> None:
    assert isinstance(translate(redis.ResponseError(reply)), BrokerUnavailable)
