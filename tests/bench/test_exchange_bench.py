"""`appliance bench exchange`: the matching part (ours and order-matching) and the feed part.

Tiny sizes: these check the benchmark runs, reports what it measured and cleans up, never how
fast anything is.
"""
from __future__ import annotations

import functools
import json
import os
import struct
import sys

import pytest

from appliance.bench import exchange_matching as bench
from appliance.bench.exchange_load import FeedCounter
from appliance.cli import main


@functools.cache
def _peer_installed() -> bool:
    return bench.peer_version()[0] is not None


def _run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["bench", "exchange", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _exchange_children() -> list[int]:
    """Live child processes of this test process running ``appliance exchange``."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ")
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z" and b"exchange" in cmdline:
            found.append(int(entry))
    return found


# ---------------------------------------------------------------- the flow

def test_the_flow_is_reproducible_and_has_the_asked_mix():
    symbols = bench.symbol_names(4)
    flow = bench.make_flow(20_000, symbols, seed=7)
    assert flow == bench.make_flow(20_000, symbols, seed=7)
    assert flow != bench.make_flow(20_000, symbols, seed=8)
    mix = bench.flow_mix(flow)
    assert abs(mix["limit"] / 20_000 - 0.50) < 0.02
    assert abs(mix["cancel"] / 20_000 - 0.35) < 0.02
    assert abs((mix["ioc"] + mix["market"]) / 20_000 - 0.15) < 0.02
    assert mix["market"] > 0 and mix["ioc"] > mix["market"]
    tokens = [op[2] for op in flow if op[0] != bench.CANCEL]
    assert len(tokens) == len(set(tokens))
    entered = {op[2]: op for op in flow if op[0] == bench.LIMIT}
    for op in flow:
        if op[0] == bench.CANCEL:          # a cancel names an earlier limit order, same firm and symbol
            assert entered[op[2]][1] == op[1] and entered[op[2]][3] == op[3]
        elif op[0] == bench.MARKET_ORDER:
            assert op[6] == bench.MARKET


def test_timer_overhead_and_percentiles():
    assert 0 < bench.timer_overhead_ns(2000) < 100_000
    summary = bench.latency_summary([10, 20, 30, 40, 1000], bytes([0, 1, 0, 2, 3]), overhead=5)
    assert summary["p50_ns"] == 25 and summary["p99_ns"] == 995 and summary["max_ns"] == 995
    assert summary["by_kind"]["limit"] == {"count": 2, "p50_ns": 5, "p99_ns": 25}


# ---------------------------------------------------------------- the peer

def test_order_matching_makes_the_same_trades_as_ours_on_a_small_flow():
    if not _peer_installed():
        pytest.skip("order-matching is not installed (pip install -e '.[bench]')")
    symbols = bench.symbol_names(3)
    flow = bench.make_flow(3000, symbols, seed=11)
    ours = bench.run_ours(flow, symbols, per_op=True)
    peer = bench.run_peer(flow, symbols, per_op=True)
    assert ours["trades"] > 50 and ours["filled_shares"] > 0 and ours["cancel_rejects"] > 0
    assert (peer["trades"], peer["filled_shares"], peer["cancel_rejects"]) == \
        (ours["trades"], ours["filled_shares"], ours["cancel_rejects"])
    assert len(peer["latencies"]) == len(flow) and min(peer["latencies"]) > 0


# ---------------------------------------------------------------- the CLI, matching part

def test_bench_exchange_json_matching_part(capsys):
    code, report = _run_json(capsys, "--operations", "3000", "--symbols", "3", "--peer-operations", "1000",
                             "--repeat", "1", "--skip-feed")
    assert code == 0 and report["errors"] == {}
    matching = report["results"]["matching"]
    assert matching["operations"] == 3000 and matching["symbols"] == 3
    assert matching["ops_per_s"] > 0 and matching["seconds"] > 0
    assert 0 <= matching["p50_ns"] <= matching["p99_ns"] <= matching["p999_ns"] <= matching["max_ns"]
    assert matching["p99_ns"] > 0 and matching["timer_overhead_ns"] > 0
    assert matching["trades"] > 0 and matching["filled_shares"] > 0 and matching["cancel_rejects"] > 0
    assert sum(matching["mix"].values()) == 3000
    assert set(matching["by_kind"]) == {"limit", "cancel", "ioc", "market"}
    assert "feed" not in report["results"]
    ratios = report["ratios"]
    assert ratios["target_ops_per_s"] == 200_000 and ratios["ours_vs_target"] > 0
    assert ratios["reference"]["liquibook"]["measured"] is False
    peer = report["peers"]["order_matching"]
    if _peer_installed():
        assert peer["available"] and peer["agrees"] and peer["operations"] == 1000 and peer["ops_per_s"] > 0
        assert report["results"]["matching_peer_prefix"]["operations"] == 1000
        assert ratios["ours_vs_order_matching"] > 0 and ratios["peer_operations"] == 1000
    else:
        assert peer["available"] is False and "not installed" in peer["reason"]


def test_bench_exchange_table_prints_the_rows(capsys):
    code = main(["bench", "exchange", "--operations", "2000", "--peer-operations", "500", "--repeat", "1",
                 "--skip-feed"])
    out = capsys.readouterr().out
    assert code == 0
    assert "appliance (whole flow)" in out and "target" in out and "200,000" in out
    assert "liquibook (C++)" in out and "NOT MEASURED" in out and "not run here" in out
    assert ("order-matching 0." in out) if _peer_installed() else ("order-matching" in out and "unavailable" in out)
    assert "feed:" not in out


def test_a_missing_peer_is_reported_not_fatal(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "order_matching.matching_engine", None)     # import now fails
    code, report = _run_json(capsys, "--operations", "1000", "--repeat", "1", "--skip-feed")
    assert code == 0
    peer = report["peers"]["order_matching"]
    assert peer["available"] is False and "pip install" in peer["reason"]
    assert "ours_vs_order_matching" not in report["ratios"] and report["results"]["matching"]["ops_per_s"] > 0


def test_skip_peer(capsys):
    code, report = _run_json(capsys, "--operations", "1000", "--repeat", "1", "--skip-feed", "--skip-peer")
    assert code == 0 and report["peers"]["order_matching"]["skipped"] is True


@pytest.mark.parametrize("argv, message", [(["--operations", "-5"], "must be between"),
                                           (["--rates", "10,abc"], "is not a number"),
                                           (["--rates", "500000"], "must be between")])
def test_bad_arguments_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "exchange", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# ---------------------------------------------------------------- the feed part's pieces

def _mold(sequence: int, count: int) -> bytes:
    return struct.pack(">10sQH", b"SIMEX00001", sequence, count) + b"\0" * 8


def test_feed_counter_counts_messages_heartbeats_and_gaps():
    counter = FeedCounter()
    for packet, in_window in ((_mold(1, 3), False), (_mold(4, 2), True), (_mold(6, 0), True),
                              (_mold(9, 1), True), (_mold(5, 1), True), (_mold(10, 0xFFFF), False)):
        counter.packet(packet, len(packet), in_window)
    assert counter.messages == 7 and counter.window_messages == 4 and counter.window_packets == 4
    assert counter.heartbeats == 1 and counter.ended
    assert counter.gaps == 1 and counter.missing == 3 and counter.late == 1


# ---------------------------------------------------------------- the feed part, end to end

@pytest.mark.slow
def test_bench_exchange_feed_part_one_second_low_rates(capsys):
    try:
        code, report = _run_json(capsys, "--operations", "1000", "--skip-peer", "--seconds", "1",
                                 "--rates", "1000,3000", "--order-rate", "200", "--timeout", "60")
    finally:
        assert _exchange_children() == []        # every exchange process was ended and reaped
    assert code == 0, report["errors"]
    feed = report["results"]["feed"]
    assert feed["msgs_per_s"] > 0 and len(feed["runs"]) == 2
    for run, rate in zip(feed["runs"], (1000, 3000)):
        assert "error" not in run, run
        assert run["rate_asked"] == rate and run["exit_code"] == 0
        assert run["msgs_per_s"] > 0 and run["packets"] > 0 and run["seconds"] >= 1
        assert run["gaps"] == 0 and run["missing_messages"] == 0
        assert run["orders_sent"] > 0 and run["cancels_sent"] > 0
        assert run["ouch_by_type"].get("A", 0) > 0 and run["ouch_by_type"].get("C", 0) > 0
        assert run["achieved_ratio"] > 0
