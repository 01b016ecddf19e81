"""The wait between tries while Redis is away, shared by the slots and the background loops."""

from __future__ import annotations

import random

CAP = 5.0


class Backoff:
    """Doubling waits from ``base`` up to ``cap`` seconds, each drawn from the upper half of
    its step (jitter), so processes that lost Redis together do not reconnect in step."""

    def __init__(self, base: float, cap: float = CAP) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure; the seconds to wait before the next try."""
        self.failures += 1
        step = min(self.base * 2 ** min(self.failures, 16), self.cap)
        return random.uniform(step / 2, step)

    def reset(self) -> None:
        """Redis answered: the next failure starts from ``base`` again."""
        self.failures = 0
