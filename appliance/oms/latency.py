"""Per-hop latency histograms made of shared-memory counters, and a reader that turns them into percentiles.

When an order's bytes are handed to the socket the OMS records, from the ApprovedOrder's
timestamps, the latency of every hop it passed:

    feed           t_feed_out_ns     - t_rx_ns            (kernel receive -> book update out)
    strategy       t_strategy_out_ns - t_feed_out_ns
    risk           t_risk_out_ns     - t_strategy_out_ns
    oms            t_oms_out         - t_risk_out_ns      (ring wait included)
    tick_to_trade  t_oms_out         - t_rx_ns

A hop whose start timestamp is 0 (an order not caused by a book update) is not recorded.

Counters of hop ``h`` (labels at most 44 bytes):

    lat.<h>.le_<bound_ns>   samples in (previous bound, bound]  -- NOT cumulative: each sample
                            counts in exactly one bucket (one increment per sample); the reader
                            accumulates them. Bounds: BOUNDS_NS below.
    lat.<h>.le_inf          samples above the last bound
    lat.<h>.sum_ns          sum of the samples
    lat.<h>.count           number of samples
    lat.<h>.max_ns          the largest sample, exact (a gauge; kept across an OMS restart): the
                            buckets only bound it, and not at all above 100 ms

``histograms(counters_by_label)`` reads them back from ``CountersReader.by_label()``: the one
reader, so ``appliance status``, shmtop, the exporter and ``bench e2e`` cannot disagree.
``Histogram.percentile(q)`` interpolates linearly inside the bucket holding the q-th sample;
``summary`` gives count, mean, p50, p90, p99 and the exact max per hop; ``cumulative`` and ``total`` give the
Prometheus buckets. This module imports nothing from the OMS agent.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from appliance.runtime.counters import CounterKind

HOPS = ("feed", "strategy", "risk", "oms", "tick_to_trade")
# Log-spaced bounds, six per decade (1, 1.5, 2, 3, 5, 7), from 1 us to 100 ms: a bucket is at most
# 1.67x its lower bound wide, so an interpolated percentile is within that ratio (HdrHistogram's idea,
# at the resolution 64-bit counters in the counters table allow: 34 counters a hop).
BOUNDS_NS = tuple(int(decade * step) for decade in (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
                  for step in (1, 1.5, 2, 3, 5, 7)) + (100_000_000,)
PREFIX = "lat."


def bucket_labels(hop: str) -> list[str]:
    return [f"{PREFIX}{hop}.le_{bound}" for bound in BOUNDS_NS] + [f"{PREFIX}{hop}.le_inf"]


def sum_label(hop: str) -> str:
    return f"{PREFIX}{hop}.sum_ns"


def count_label(hop: str) -> str:
    return f"{PREFIX}{hop}.count"


def max_label(hop: str) -> str:
    return f"{PREFIX}{hop}.max_ns"


def all_labels() -> list[str]:
    labels = []
    for hop in HOPS:
        labels += bucket_labels(hop) + [sum_label(hop), count_label(hop), max_label(hop)]
    return labels


assert max(len(label.encode()) for label in all_labels()) <= 44


class HopRecorder:
    """The writing side: one counter per bucket, plus sum and count, for one hop."""

    __slots__ = ("buckets", "total", "count", "max", "max_ns")

    def __init__(self, allocate, hop: str):
        self.buckets = [allocate(label) for label in bucket_labels(hop)]
        self.total = allocate(sum_label(hop))
        self.count = allocate(count_label(hop))
        self.max = allocate(max_label(hop), CounterKind.GAUGE)
        self.max_ns = self.max.get()            # a restarted OMS keeps the day's max

    def record(self, value_ns: int, _bisect=bisect.bisect_left, _bounds=BOUNDS_NS) -> None:
        if value_ns < 0:
            value_ns = 0
        self.buckets[_bisect(_bounds, value_ns)].inc()
        self.total.add(value_ns)
        self.count.inc()
        if value_ns > self.max_ns:
            self.max_ns = value_ns
            self.max.set(value_ns)


class LatencyRecorder:
    """All five hops; ``record_order`` is called once per order handed to the socket."""

    def __init__(self, allocate):
        self.feed, self.strategy, self.risk, self.oms, self.tick_to_trade = (HopRecorder(allocate, h) for h in HOPS)

    def record_order(self, t_rx_ns: int, t_feed_out_ns: int, t_strategy_out_ns: int, t_risk_out_ns: int,
                     t_oms_out_ns: int) -> None:
        if t_rx_ns and t_feed_out_ns:
            self.feed.record(t_feed_out_ns - t_rx_ns)
            self.tick_to_trade.record(t_oms_out_ns - t_rx_ns)
        if t_feed_out_ns and t_strategy_out_ns:
            self.strategy.record(t_strategy_out_ns - t_feed_out_ns)
        if t_strategy_out_ns and t_risk_out_ns:
            self.risk.record(t_risk_out_ns - t_strategy_out_ns)
        if t_risk_out_ns:
            self.oms.record(t_oms_out_ns - t_risk_out_ns)


@dataclass(frozen=True)
class Histogram:
    hop: str
    buckets: tuple[int, ...]      # per bucket (not cumulative), len(BOUNDS_NS) + 1
    sum_ns: int
    count: int
    max_ns: int = 0               # exact, from lat.<hop>.max_ns (0: no sample, or an OMS without it)

    @property
    def total(self) -> int:
        """Every observation (the +Inf bucket): the count, or the buckets' sum when a read of the
        counters, not atomic while the OMS adds, caught the buckets ahead of the count."""
        return max(self.count, sum(self.buckets))

    def cumulative(self) -> list[tuple[int, int]]:
        """(bound_ns, observations <= bound) for every finite bound: Prometheus's ``le`` buckets."""
        out, running = [], 0
        for bound, n in zip(BOUNDS_NS, self.buckets):
            running += n
            out.append((bound, running))
        return out

    @property
    def mean_ns(self) -> float:
        return self.sum_ns / self.count if self.count else 0.0

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in ns, interpolated inside its bucket; None without samples.
        Samples above the last bound report the last bound (the histogram cannot say more)."""
        total = sum(self.buckets)
        if not total:
            return None
        rank = max(1.0, q / 100.0 * total)
        seen = 0
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                if i >= len(BOUNDS_NS):
                    return float(BOUNDS_NS[-1])
                low = BOUNDS_NS[i - 1] if i else 0
                return low + (BOUNDS_NS[i] - low) * (rank - seen) / n
            seen += n
        return float(BOUNDS_NS[-1])


def histogram(counters: dict[str, int], hop: str) -> Histogram:
    return Histogram(hop, tuple(counters.get(label, 0) for label in bucket_labels(hop)),
                     counters.get(sum_label(hop), 0), counters.get(count_label(hop), 0),
                     counters.get(max_label(hop), 0))


def histograms(counters: dict[str, int]) -> dict[str, Histogram]:
    """Every hop's histogram from ``CountersReader.by_label()``; none for a hop without counters
    (a layout without an OMS has none)."""
    return {hop: histogram(counters, hop) for hop in HOPS if count_label(hop) in counters}


def summary(counters: dict[str, int]) -> dict[str, dict]:
    """Per hop: count, mean, p50, p90, p99, max (ns; None without samples) - what ``appliance status``,
    shmtop and the exporter show."""
    out = {}
    for hop, h in histograms(counters).items():
        out[hop] = {"count": h.count, "mean_ns": h.mean_ns if h.count else None, "p50_ns": h.percentile(50),
                    "p90_ns": h.percentile(90), "p99_ns": h.percentile(99),
                    "max_ns": h.max_ns if h.count else None}
    return out

