"""``appliance bench backtest`` runs end to end on a small generated day: the backtest with the market maker and
without a strategy, and bench feed's two replay passes over the same bytes, with the ratios."""
from __future__ import annotations

import json

import pytest

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


@pytest.mark.parametrize("latency", ["zero", "feed=20000,entry=30000,ack=30000"])
def test_the_market_maker_quotes_the_bench_day(capsys, tmp_path, latency):
    """The bench's generated day through ``appliance backtest`` (its instruments, limits and parameters): the
    market maker quotes and trades. Its books were crossed most of the time (the generator's independent
    uniform prices), so it pulled its quotes: 203 orders in 2 M messages, none at all in a short day."""
    from appliance.bench import feed_replay
    from appliance.bench.backtest import _settings

    day = feed_replay.day_file(20_000, feed_replay.SEED, 20, tmp_path)["path"]
    traded = feed_replay.directory_symbols(open(day, "rb").read(), 20)[::2]
    files = _settings(tmp_path, traded)
    assert main(["backtest", day, "--instruments", files["instruments"], "--limits", files["limits"], "--params",
                 files["params"], "--fees", "none", "--latency", latency, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results["orders"] >= 100 and results["fills"] >= 10, results
    assert "BOOK_CROSSED" not in results["refusals"]
