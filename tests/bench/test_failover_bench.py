"""`appliance bench failover` with tiny settings: it runs every mode and both takeover paths, reports
the agreed JSON shape and cleans up; never how fast anything is."""
from __future__ import annotations

import json

import pytest

from appliance.bench import failover
from bench_args import bench_args, live_children


def test_bench_failover_reports_takeover_against_restart_and_sync_over_tcp_and_shm_and_async_against_none(capsys):
    # the standby sleeps between records here: the bench's own loop is this test's one busy spinner
    code = failover.run(bench_args(failover, "--orders", "50", "--warmup", "10", "--rounds", "1", "--takeovers", "2",
                                   "--standby-spin-us", "0"))
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["errors"]
    results = out["results"]
    takeover, restart = results["takeover"], results["restart_recover"]
    assert takeover["count"] == 2 and restart["count"] == 2
    assert takeover["lost_orders"] == 0 and takeover["duplicate_orders"] == 0 and restart["duplicate_orders"] == 0
    for row in (takeover, restart):
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["max_ms"]
    cost = results["sync_cost"]
    assert 0 < cost["same_box_p50_ns"] and 0 < cost["none_p50_ns"] and 0 < cost["tcp_p50_ns"]
    assert cost["same_box_extra_p50_ns"] == cost["same_box_p50_ns"] - cost["none_p50_ns"]
    for mode in ("off", "sync", "sync_shm", "async"):
        assert results["modes"][mode]["orders"] == 50
        assert results["modes"][mode]["orders_sent"] == 60 and results["modes"][mode]["rejects"] == 0
    assert not live_children()


def test_bench_failover_modes_measures_only_those_and_splits_a_held_orders_time(capsys):
    code = failover.run(bench_args(failover, "--orders", "30", "--warmup", "5", "--rounds", "1", "--takeovers", "0",
                                   "--modes", "sync_shm,off", "--standby-spin-us", "0"))
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["errors"]
    results = out["results"]
    assert sorted(results["modes"]) == ["off", "sync_shm"] and results["standby_spin_us"] == 0
    cost = results["sync_cost"]
    assert cost["tcp_p50_ns"] is None and cost["extra_p50_ns"] is None
    assert cost["same_box_extra_p50_ns"] == cost["same_box_p50_ns"] - cost["none_p50_ns"]
    stages = results["modes"]["sync_shm"]["stages_p50_ns"]
    assert set(stages) == {"to_standby", "ack_round_trip", "ack_to_send"} and all(v >= 0 for v in stages.values())
    assert stages["ack_round_trip"] > 0 and "stages_p50_ns" not in results["modes"]["off"]
    assert not live_children()


def test_bench_failover_refuses_an_unknown_mode():
    with pytest.raises(SystemExit):
        bench_args(failover, "--modes", "sync,fast")
