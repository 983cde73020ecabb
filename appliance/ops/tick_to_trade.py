"""Tick-to-trade histograms read back from the OMS's latency counters, for shmtop and the exporter.

The OMS records every hop's latency as plain shared-memory counters (no metrics library on the
hot path): ``lat.<hop>.le_<bound_ns>`` per bucket, ``lat.<hop>.sum_ns`` and ``lat.<hop>.count``.
``appliance.oms.latency`` owns the bounds and says whether a bucket counts the observations
<= its bound (cumulative, the Prometheus way) or only those in its own interval (it says the
latter, ``CUMULATIVE = False``, with ``lat.<hop>.le_inf`` for the overflow); this module asks
it and falls back to inferring it from the numbers when it cannot say. The bounds are taken
from the labels found, so an OMS built with other bounds is still read right.

The counters are read one by one while the OMS may be adding to them, so a read is not an
atomic cut: buckets are made monotonic and the count made no smaller than the last bucket,
which is what a Prometheus histogram must look like.
"""
from __future__ import annotations

from dataclasses import dataclass

try:                                   # the OMS's module; absent in layouts/builds without it
    from appliance.oms import latency as oms_latency
except ImportError:                    # pragma: no cover - depends on what is installed
    oms_latency = None

LABEL_PREFIX = "lat."
INFINITY_SUFFIXES = ("inf", "+inf", "Inf", "+Inf")
PERCENTILES = (50, 90, 99)


@dataclass
class LatencyHistogram:
    hop: str
    bounds_ns: list[int]        # ascending, finite
    cumulative: list[int]       # observations <= each bound
    count: int                  # every observation (the +Inf bucket)
    sum_ns: int

    def percentile_ns(self, q: float) -> float | None:
        """The q-th percentile, interpolated inside its bucket (None when empty; past the top
        bound: the top bound, the best a bounded histogram can say)."""
        if self.count <= 0:
            return None
        rank = self.count * q / 100.0
        lower_bound, lower_count = 0, 0
        for bound, cumulative in zip(self.bounds_ns, self.cumulative):
            if cumulative >= rank and cumulative > lower_count:
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
            lower_bound, lower_count = bound, cumulative
        return float(self.bounds_ns[-1]) if self.bounds_ns else None

    def summary(self) -> dict:
        out = {"count": self.count, "mean_ns": self.sum_ns / self.count if self.count else None}
        for q in PERCENTILES:
            out[f"p{q}_ns"] = self.percentile_ns(q)
        return out


def _bound_of(suffix: str) -> float | None:
    if suffix in INFINITY_SUFFIXES:
        return float("inf")
    try:
        return int(suffix)
    except ValueError:
        return None


def _declared_cumulative() -> bool | None:
    value = getattr(oms_latency, "CUMULATIVE", None) if oms_latency is not None else None
    return value if isinstance(value, bool) else None


def _looks_cumulative(buckets: list[int], count: int) -> bool:
    """Without a declaration: which reading the numbers allow (per-interval buckets cannot sum
    past the count; cumulative ones cannot decrease). When both fit, per-interval buckets that
    add up exactly to the count are the likelier story."""
    monotonic = all(a <= b for a, b in zip(buckets, buckets[1:]))
    fits_cumulative = monotonic and (not buckets or buckets[-1] <= count)
    fits_intervals = sum(buckets) <= count
    if fits_cumulative != fits_intervals:
        return fits_cumulative
    return not (fits_intervals and sum(buckets) == count)


def read_histograms(counters: dict[str, int]) -> dict[str, LatencyHistogram]:
    """Every hop's histogram found among the counters (label -> value), in hop order of appearance."""
    raw: dict[str, dict] = {}
    for label, value in counters.items():
        if not label.startswith(LABEL_PREFIX):
            continue
        hop, _, field_name = label[len(LABEL_PREFIX):].rpartition(".")
        if not hop:
            continue
        entry = raw.setdefault(hop, {"buckets": {}, "count": 0, "sum_ns": 0, "inf": None})
        if field_name == "count":
            entry["count"] = max(0, value)
        elif field_name == "sum_ns":
            entry["sum_ns"] = max(0, value)
        elif field_name.startswith("le_"):
            bound = _bound_of(field_name[3:])
            if bound == float("inf"):
                entry["inf"] = max(0, value)
            elif bound is not None and bound > 0:
                entry["buckets"][bound] = max(0, value)
    declared = _declared_cumulative()
    histograms = {}
    for hop, entry in raw.items():
        bounds = sorted(entry["buckets"])
        values = [entry["buckets"][b] for b in bounds]
        count = entry["count"]
        cumulative_buckets = declared if declared is not None else _looks_cumulative(values, count)
        cumulative, running = [], 0
        for v in values:
            running = max(running, v) if cumulative_buckets else running + v
            cumulative.append(running)
        if entry["inf"] is not None:        # an explicit overflow bucket counts too
            count = max(count, entry["inf"] if cumulative_buckets else running + entry["inf"])
        count = max(count, cumulative[-1] if cumulative else 0)
        histograms[hop] = LatencyHistogram(hop, bounds, cumulative, count, entry["sum_ns"])
    return histograms


def percentiles(counters: dict[str, int]) -> dict[str, dict]:
    """{hop: {"count", "mean_ns", "p50_ns", "p90_ns", "p99_ns"}} for every hop that has counters:
    the OMS's own reader's numbers where it gives them (``summary``, or the
    ``percentiles_from_counters`` that ``appliance status`` asks for), ours for the rest."""
    ours = {hop: h.summary() for hop, h in read_histograms(counters).items()}
    reader = None
    if oms_latency is not None:
        reader = getattr(oms_latency, "percentiles_from_counters", None) or getattr(oms_latency, "summary", None)
    if reader is None or not ours:
        return ours
    try:
        theirs = reader(counters)
    except Exception:                 # a half-written histogram must not break a view
        return ours
    if not isinstance(theirs, dict):
        return ours
    for hop, row in ours.items():
        extra = theirs.get(hop)
        if isinstance(extra, dict):
            row.update({k: v for k, v in extra.items() if isinstance(v, (int, float)) or v is None})
    return ours
