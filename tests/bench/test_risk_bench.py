"""`appliance bench risk`: tiny sizes; these check the benchmark runs and reports what it measured, never how fast."""
from __future__ import annotations

import json

from appliance.bench import risk as bench
from appliance.risk import fast
from bench_args import bench_args


def test_json_report_has_the_agreed_shape(capsys):
    code = bench.run(bench_args(bench, "--orders", "2000", "--peer-orders", "300", "--repeat", "1"))
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["errors"]
    check = report["results"]["risk_check"]
    for key in ("p50_ns", "p99_ns", "p999_ns", "orders_per_s"):
        assert isinstance(check[key], (int, float)) and check[key] > 0, key
    assert check["p50_ns"] <= check["p99_ns"] <= check["p999_ns"]
    assert check["orders"] == 2000 and check["approved"] == 2000          # every order reached every check
    assert check["symbols"] == 50 and check["open_orders"] == 200
    reference = report["peers"]["python_reference"]          # RiskEngine.check alone, same state and flow
    assert reference["available"] and reference["agrees"] and reference["orders"] == 2000
    assert reference["p50_ns"] > 0 and report["ratios"]["python_p50_vs_ours_p50"] > 0
    assert check["compiled"] is fast.AVAILABLE
    if fast.AVAILABLE:
        assert check["compiled_decided"] > 0
    peer = report["peers"]["naive_dict"]
    assert peer["available"] and peer["agrees"] and peer["orders"] == 300
    assert report["ratios"]["naive_p50_vs_ours_p50"] > 0
    reference = report["references"]["python_risk_engine_published"]
    assert reference["measured"] is False and reference["mean_ns"] == 11_000
    assert report["results"]["risk_decide"]["orders"] > 0


def test_table_and_skip_peer(capsys):
    assert bench.run(bench_args(bench, "--orders", "500", "--symbols", "5", "--open-orders", "20", "--skip-peer",
                                "--repeat", "1", json=False)) == 0
    out = capsys.readouterr().out
    assert "Python reference RiskEngine.check" in out and "NOT MEASURED" in out and "skipped" in out
    assert ("appliance check set (compiled)" if fast.AVAILABLE else "appliance RiskEngine.check") in out


def test_the_naive_baseline_denies_like_the_engine():
    """The peer is only a fair comparison if it decides the same; here on orders that break limits too."""
    state = bench.BenchState(5, 10, 3)
    naive = bench.NaiveRiskChecks(state)
    sid = 0
    ref = state.refs[sid]
    cases = [(1, 1, 0, sid, 66, 100, ref, 99998), (1, 2, 0, sid, 66, 150, ref, 99998),
             (1, 3, 0, sid, 66, 100, ref + 1, 99998), (1, 4, 0, sid, 66, 100, ref * 2, 99998),
             (1, 5, 0, sid, 66, 100_000, ref, 99998), (1, 6, 0, sid, 66, 100, ref, 7)]
    from appliance.messages.codes import RiskReason
    for case in cases:
        ours = state.engine.check(*case, state.now)
        theirs = naive.check(naive.order_dict(case, state.symbols), state.now)
        assert (RiskReason(ours).name if ours else None) == theirs, case
