"""The replay's latency model: constants from a command line, or the p50s of a live run's histograms."""
from __future__ import annotations

import json

import pytest

from appliance.replay.latency import DEFAULT_ACK_NS, Latency, LatencyError


def test_constants_and_zero():
    assert Latency.parse("feed=1,entry=2_000,ack=3") == Latency(1, 2000, 3)
    assert Latency.parse("entry=5") == Latency(entry_ns=5)
    assert Latency.parse("zero") == Latency(0, 0, 0)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("feed=x", "not an integer"), ("feed=-1", "0.."), ("wire=3", "unknown part"),
    ("feed=1,feed=2", "twice"), ("feed=99999999999999", "0.."), ("/nonexistent.json", "No such file"),
])
def test_bad_specifications(text, reason):
    with pytest.raises(LatencyError, match=reason):
        Latency.parse(text)


def hops(feed, strategy, risk, oms):
    return {h: {"count": 10, "p50_ns": v, "p99_ns": v * 2} for h, v in
            (("feed", feed), ("strategy", strategy), ("risk", risk), ("oms", oms))}


def test_from_a_bench_e2e_result_and_a_status(tmp_path):
    bench = tmp_path / "e2e.json"
    bench.write_text(json.dumps({"config": "full", "hops": hops(1000, 2000, 3000.4, 4000)}))
    assert Latency.parse(str(bench)) == Latency(1000, 9000, DEFAULT_ACK_NS)
    assert Latency.parse(f"{bench},ack=7") == Latency(1000, 9000, 7)
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"tick_to_trade": {**hops(10, 20, 30, 40), "tick_to_trade": {"p50_ns": 100}}}))
    assert Latency.parse(str(status)) == Latency(10, 90, DEFAULT_ACK_NS)


def test_files_without_histograms(tmp_path):
    bad = tmp_path / "bad.json"
    for content, reason in (("{", "not JSON"), ("[1]", "no per-hop"), (json.dumps({"hops": {"feed": {}}}), "no per-hop"),
                            (json.dumps({"hops": {**hops(1, 2, 3, 4), "risk": {"p50_ns": None}}}), "no samples")):
        bad.write_text(content)
        with pytest.raises(LatencyError, match=reason):
            Latency.parse(str(bad))
