"""Which queues a worker serves, and in what order it asks them for work."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from .keys import valid_queue_name


@dataclass(frozen=True)
class Serving:
    """The queues a worker takes from: ``names`` in strict order (each asked only when
    the ones before it have nothing), or, with ``weights``, in an order drawn afresh for
    every take, each queue first with probability proportional to its weight (so no
    queue starves).  Empty ``names``: every queue the namespace knows, equally weighted.
    """

    names: tuple[str, ...] = ()
    weights: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Serving:
        """Parse ``--queues``: ``a,b`` (strict order) or ``a:3,b:1`` (weights); raise
        ValueError naming what is wrong."""
        names: list[str] = []
        weights: list[int] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                raise ValueError(f"empty queue name in {text!r}")
            name, sep, weight = item.partition(":")
            if not valid_queue_name(name):
                raise ValueError(f"invalid queue name {name!r} (letters, digits, '_', '.', '-';"
                                 " at most 64; starting with a letter or digit)")
            if name in names:
                raise ValueError(f"queue {name!r} is listed twice")
            if sep:
                if not weight.isdigit() or not 1 <= int(weight) <= 1000:
                    raise ValueError(f"weight of queue {name!r} must be an integer 1-1000")
                weights.append(int(weight))
            names.append(name)
        if weights and len(weights) != len(names):
            raise ValueError("give every queue a weight, or none")
        return cls(tuple(names), tuple(weights) if weights else None)

    @classmethod
    def every(cls, names: Sequence[str]) -> Serving:
        """Every one of ``names``, equally weighted."""
        return cls(tuple(names), tuple(1 for _ in names) if len(names) > 1 else None)

    def order(self) -> list[str]:
        """The queues to ask, in order, for one take."""
        if not self.weights:
            return list(self.names)
        # A weighted draw without replacement (Efraimidis-Spirakis): key u^(1/w).
        keyed = sorted(((random.random() ** (1.0 / w), name)
                        for name, w in zip(self.names, self.weights, strict=True)),
                       reverse=True)
        return [name for _, name in keyed]

    def describe(self) -> str:
        """The serving order as ``--queues`` spells it ('*' for every queue)."""
        if not self.names:
            return "*"
        if not self.weights:
            return ",".join(self.names)
        return ",".join(f"{n}:{w}" for n, w in zip(self.names, self.weights, strict=True))
