"""`appliance bench hops` with tiny settings: it runs every hop, reports them in the agreed JSON shape
with sane positive numbers, and leaves no process, shared memory or scratch directory behind; never
how fast anything is."""
from __future__ import annotations

import argparse
import glob
import json

import pytest

from appliance.bench import hops as hops_bench
from appliance.bench.hops_rig import LAYOUT_PREFIX
from bench_args import bench_args, live_children
from appliance.command_io.arguments import UsageError


def _leftovers() -> list[str]:
    return glob.glob(f"/dev/shm/{LAYOUT_PREFIX}*") + glob.glob("/tmp/bench-hops-*")


def test_bench_hops_reports_every_hop_in_the_agreed_shape_and_cleans_up(capsys):
    before = set(_leftovers())
    code = hops_bench.run(bench_args(hops_bench, "--samples", "40", "--warmup", "5", "--ring-round-trips", "2000", "--timeout", "60"))
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["errors"]
    assert out["benchmark"] == "hops" and out["errors"] == {}
    results = out["results"]
    assert set(results["hops"]) == set(hops_bench.HOPS)
    for name, hop in results["hops"].items():
        assert hop["samples"] >= 40 if name != "ring" else hop["samples"] == 2000
        assert 0 < hop["p50_ns"] <= hop["p99_ns"] <= hop["p999_ns"], name
        assert hop["p50_ns"] < 10_000_000_000, name            # a latency, not a clock mix-up
    (back_to_back,) = results["hops"]["risk"]["cases"].values()     # risk's unpaced case beside the paced flow
    assert back_to_back["samples"] >= 40 and 0 < back_to_back["p50_ns"] <= back_to_back["p99_ns"]
    oms = results["hops"]["oms"]
    assert 0 < oms["approved_to_peer"]["p50_ns"] <= oms["approved_to_peer"]["p99_ns"]
    assert results["sum_p50_ns"] == sum(results["hops"][h]["p50_ns"] for h in ("feed", "strategy", "risk", "oms"))
    assert results["sum_p99_ns"] >= results["sum_p50_ns"] > 0
    assert set(results["verdicts"]) >= {"feed_p50", "strategy_p50", "risk_p50", "oms_p50", "sum_p50"}
    assert all(isinstance(v, bool) for v in results["verdicts"].values())
    for case in ("single", "packet20"):              # the feed's decode: pure Python beside the compiled scanner
        peer = out["peers"][f"itch_decode_{case}_python"]
        assert 0 < peer["p50_ns"] <= peer["p99_ns"] and 0 < peer["ours_p50_ns"]
        assert out["ratios"][f"itch_decode_{case}_python_vs_ours_p50"] > 0
    feed = results["hops"]["feed"]                   # the agent's compiled books, the Python ones as the peer
    assert feed["books"] == "compiled"
    python = out["peers"]["feed_agent_python_books"]
    assert 0 < python["p50_ns"] <= python["p99_ns"] and python["ours_p50_ns"] == feed["p50_ns"]
    assert python["packet20"]["p50_ns"] > 0 and out["ratios"]["feed_agent_python_books_vs_ours_p50"] > 0
    strategy = results["hops"]["strategy"]           # the compiled quote step, the Python one as the peer
    assert strategy["quote"] == "compiled"
    python = out["peers"]["strategy_python_quote"]
    assert python["quote"] == "python" and 0 < python["p50_ns"] <= python["p99_ns"]
    assert python["ours_p50_ns"] == strategy["p50_ns"] and out["ratios"]["strategy_python_quote_vs_ours_p50"] > 0
    assert set(out["ratios"]) >= {"feed_p50_vs_target", "strategy_p50_vs_target", "risk_p50_vs_target",
                                  "oms_p50_vs_target"}
    assert live_children() == []
    assert set(_leftovers()) <= before


def test_bench_hops_table_names_the_targets_and_the_budget(capsys):
    code = hops_bench.run(argparse.Namespace(**{**vars(bench_args(hops_bench, "--samples", "20", "--warmup", "2", "--hops", "risk")),
                                                "json": False}))
    text = capsys.readouterr().out
    assert code == 0, text
    assert "risk (intent->approved)" in text and "1,500" in text and "signal 3 us" in text
    assert "sum (feed+strategy+risk+oms)" in text


def test_bench_hops_refuses_an_unknown_hop():
    with pytest.raises(UsageError):
        hops_bench.run(bench_args(hops_bench, "--hops", "risk,teleport"))
