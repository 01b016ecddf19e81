"""Cluster-wide metrics kept in one Redis hash, updated inside the state-change scripts.

Counters and histogram buckets move in the same script as the transition they
count, so they are exact, shared by every process on every host, and survive
restarts of the web servers.  Each hash field is ``kind<TAB>name<TAB>labels...``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

SEP = "\t"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 300.0, 900.0, 3600.0)
HISTOGRAMS = {"duration": DURATION_BUCKETS, "queue_wait": WAIT_BUCKETS}


def lua_header() -> str:
    """Bucket bounds as Lua tables, for the scripts."""
    lines = []
    for name, bounds in HISTOGRAMS.items():
        items = ", ".join(repr(b) for b in bounds)
        lines.append(f"local BUCKETS_{name.upper()} = {{{items}}}")
    return "\n".join(lines) + "\n"


@dataclass
class Histogram:
    """One labelled histogram: per-bucket (not cumulative) counts, sum and count."""

    bounds: tuple[float, ...]
    buckets: list[int]
    sum: float = 0.0
    count: int = 0

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs ending with +Inf, as Prometheus wants them."""
        out, total = [], 0
        for bound, n in zip(self.bounds, self.buckets, strict=False):
            total += n
            out.append((_le(bound), total))
        out.append(("+Inf", self.count))
        return out


@dataclass
class Snapshot:
    """Everything in the metrics hash, parsed."""

    counters: dict[str, dict[tuple[str, ...], int]] = field(
        default_factory=lambda: defaultdict(dict))
    histograms: dict[str, dict[tuple[str, ...], Histogram]] = field(
        default_factory=lambda: defaultdict(dict))


def parse(raw: dict[str, str]) -> Snapshot:
    """Turn the metrics hash into counters and histograms keyed by label values."""
    snap = Snapshot()
    for key, value in raw.items():
        kind, name, *labels = key.split(SEP)
        if kind == "c":
            snap.counters[name][tuple(labels)] = int(value)
        elif kind in ("h", "hs", "hc") and name in HISTOGRAMS:
            _histogram_field(snap, kind, name, labels, value)
    return snap


def _histogram_field(snap: Snapshot, kind: str, name: str, labels: list[str], value: str) -> None:
    bounds = HISTOGRAMS[name]
    label_key = tuple(labels[:-1]) if kind == "h" else tuple(labels)
    hist = snap.histograms[name].get(label_key)
    if hist is None:
        hist = snap.histograms[name][label_key] = Histogram(bounds, [0] * len(bounds))
    if kind == "h":
        index = int(labels[-1])
        if index < len(bounds):
            hist.buckets[index] += int(value)
    elif kind == "hs":
        hist.sum = int(value) / 1_000_000
    else:
        hist.count = int(value)


def _le(bound: float) -> str:
    return repr(float(bound))


def bucket_index(bounds: tuple[float, ...], seconds: float) -> int:
    """The (non-cumulative) bucket a value falls in: the first bound it does not pass, or
    ``len(bounds)`` past the last (the same rule as ``observe`` in the Lua scripts)."""
    for i, bound in enumerate(bounds):
        if seconds <= bound:
            return i
    return len(bounds)


class Tally:
    """Metric deltas a worker slot accumulates and hands to a script to apply (HINCRBY).

    A busy slot counts its completions, run times and queue waits here and flushes them
    with its next acknowledgement once a second, or when it finds the queue empty, instead
    of three Redis commands per figure per task.  The fields are those of the metrics hash,
    so the figures stay cluster-wide; a slot that dies loses at most its unflushed deltas.
    """

    def __init__(self) -> None:
        self._deltas: dict[str, int] = defaultdict(int)
        self.applied_at = time.monotonic()
        """When the deltas were last applied (monotonic clock)."""

    def due(self, every: float) -> bool:
        """True when the deltas were last applied ``every`` seconds ago or more."""
        return time.monotonic() - self.applied_at >= every

    def count(self, name: str, *labels: str) -> None:
        """Add one to a counter."""
        self._deltas[SEP.join(("c", name, *labels))] += 1

    def observe(self, name: str, label: str, seconds: float) -> None:
        """Observe a value in a histogram with one label."""
        bounds = HISTOGRAMS[name]
        tail = f"{name}{SEP}{label}"
        self._deltas[f"h{SEP}{tail}{SEP}{bucket_index(bounds, seconds)}"] += 1
        self._deltas[f"hs{SEP}{tail}"] += int(seconds * 1_000_000)
        self._deltas[f"hc{SEP}{tail}"] += 1

    def args(self) -> list[str | int]:
        """The deltas as script arguments: their number, then field, delta pairs."""
        out: list[str | int] = [len(self._deltas)]
        for name, delta in self._deltas.items():
            out.extend((name, delta))
        return out

    def merge(self, other: Tally) -> None:
        """Add another tally's deltas to this one."""
        for name, delta in other._deltas.items():
            self._deltas[name] += delta

    def clear(self) -> None:
        """Forget the deltas (a script applied them)."""
        self._deltas.clear()
        self.applied_at = time.monotonic()

    def __bool__(self) -> bool:
        return bool(self._deltas)
