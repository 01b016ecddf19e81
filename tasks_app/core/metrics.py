"""Cluster-wide metrics kept in one Redis hash, updated inside the state-change scripts.

Counters and histogram buckets move in the same script as the transition they
count, so they are exact, shared by every process on every host, and survive
restarts of the web servers and kills of workers.  A script sums its deltas per field
and applies them once at its end, so a batch of tasks costs one HINCRBY per distinct
field, not three per histogram per task.  Each hash field is ``kind<TAB>name<TAB>labels...``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

SEP = "\t"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 300.0, 900.0, 3600.0)
SCHEDULE_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                        3600.0, 86400.0)
"""Bounds of ``schedule_lag``: a periodic task's creation minus its tick (seconds)."""
HISTOGRAMS = {"duration": DURATION_BUCKETS, "queue_wait": WAIT_BUCKETS,
              "schedule_lag": SCHEDULE_LAG_BUCKETS}


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
