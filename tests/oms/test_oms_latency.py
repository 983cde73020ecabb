"""Per-hop latency histograms in counters: labels, buckets (not cumulative), and percentiles read back."""
from __future__ import annotations

from appliance.oms import latency


class FakeCounter:
    def __init__(self):
        self.value = 0

    def inc(self):
        self.value += 1

    def add(self, n):
        self.value += n

    def set(self, n):
        self.value = n

    def get(self):
        return self.value


def test_labels_fit_the_counter_table_and_name_every_hop():
    labels = latency.all_labels()
    assert all(len(label.encode()) <= 44 for label in labels)
    assert len(labels) == len(latency.HOPS) * (len(latency.BOUNDS_NS) + 4)
    assert "lat.tick_to_trade.le_10000000" in labels and "lat.oms.le_inf" in labels


def test_samples_fall_in_one_bucket_each_and_percentiles_interpolate():
    counters = {}

    def allocate(label, kind=None):
        return counters.setdefault(label, FakeCounter())
    recorder = latency.LatencyRecorder(allocate)
    t_rx = 1_000_000_000
    for i in range(100):            # oms hop: 1..100 us; feed 10 us; no strategy hop when its stamp is 0
        t_risk = t_rx + 50_000
        recorder.record_order(t_rx, t_rx + 10_000, 0, t_risk, t_risk + (i + 1) * 1_000)
    values = {label: c.value for label, c in counters.items()}
    h = latency.histograms(values)
    assert h["oms"].count == 100 and sum(h["oms"].buckets) == 100
    assert h["strategy"].count == 0 and h["strategy"].percentile(50) is None
    assert h["feed"].buckets[latency.BOUNDS_NS.index(10_000)] == 100
    assert 45_000 <= h["oms"].percentile(50) <= 55_000
    assert 95_000 <= h["oms"].percentile(99) <= 100_000
    assert h["oms"].mean_ns == sum(range(1, 101)) * 1_000 / 100
    summary = latency.summary(values)
    assert summary["tick_to_trade"]["count"] == 100
    recorder.oms.record(10**12)     # beyond the last bound: the overflow bucket
    assert counters["lat.oms.le_inf"].value == 1


def test_each_hop_keeps_its_exact_max_beyond_what_the_buckets_can_say():
    """The buckets put 23.4 ms in (20, 30] ms and 250 ms only above 100 ms; the max says which."""
    counters = {}

    def allocate(label, kind=None):
        return counters.setdefault(label, FakeCounter())
    recorder = latency.LatencyRecorder(allocate)
    for sample in (5_000, 23_400_123, 7_000):
        recorder.oms.record(sample)
    assert latency.histograms({label: c.value for label, c in counters.items()})["oms"].max_ns == 23_400_123
    recorder.oms.record(250_000_000)
    values = {label: c.value for label, c in counters.items()}
    assert latency.summary(values)["oms"]["max_ns"] == 250_000_000
    assert latency.summary(values)["feed"]["max_ns"] is None                 # no samples
    again = latency.LatencyRecorder(allocate)                                # a restarted OMS
    again.oms.record(1_000)
    assert counters[latency.max_label("oms")].value == 250_000_000


def test_the_one_reader_gives_prometheus_buckets_and_only_the_hops_that_have_counters():
    """The exporter's buckets, shmtop's and ``appliance status``'s percentiles all come from here."""
    values = {label: 0 for label in latency.bucket_labels("oms")}
    values[latency.bucket_labels("oms")[0]] = 2                          # <= 1 us
    values[latency.bucket_labels("oms")[latency.BOUNDS_NS.index(10_000)]] = 3
    values["lat.oms.le_inf"] = 1                                         # above every bound
    values[latency.sum_label("oms")] = 10**9
    values[latency.count_label("oms")] = 5                               # read before the last increment
    hists = latency.histograms(values)
    assert list(hists) == ["oms"] and list(latency.summary(values)) == ["oms"]
    cumulative = dict(hists["oms"].cumulative())
    assert list(cumulative) == list(latency.BOUNDS_NS)
    assert cumulative[1_000] == 2 and cumulative[7_000] == 2 and cumulative[10_000] == 5
    assert cumulative[latency.BOUNDS_NS[-1]] == 5
    assert hists["oms"].total == 6                                       # +Inf: never below the buckets
    assert latency.histograms({}) == {}
