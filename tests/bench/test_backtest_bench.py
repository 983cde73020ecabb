"""``appliance bench backtest`` runs end to end on a small generated day: the backtest with the market maker and
without a strategy, and bench feed's two replay passes over the same bytes, with the ratios."""
from __future__ import annotations

import json

from appliance.cli import main


def test_bench_backtest_json_shape(capsys, tmp_path):
    assert main(["bench", "backtest", "--json", "--messages", "20000", "--cache-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == {}
    results = report["results"]
    messages = report["day"]["messages"]
    for name in ("backtest", "backtest_idle", "feed_replay", "feed_compiled"):
        assert results[name]["messages"] == messages and results[name]["msgs_per_s"] > 0, name
    assert len(report["traded"]) == 10
    assert results["backtest"]["intents"] > 0 and results["backtest_idle"]["orders"] == 0
    assert set(report["ratios"]) == {"backtest_vs_backtest_idle", "backtest_vs_feed_replay",
                                     "backtest_vs_feed_compiled"}
    assert report["target"]["msgs_per_s"] == 2_000_000
