"""A backtest with the venue's compiled recorded book gives the same report, byte for byte, as with the
Python reference (``BacktestSetup.venue_compiled=False``): the reference market maker on a day recorded
from the simulated exchange, several queue models (``bench backtest``'s generated day:
``tests/bench/test_venue_fast_days.py``)."""
from __future__ import annotations

import pytest

from appliance.replay import venue as venue_module
from appliance.replay.latency import Latency
from appliance.strategy.market_maker import MarketMaker, MarketMakerParameters
from backtest_days import recorded_day, reports_both_ways, setup

pytestmark = pytest.mark.skipif(not venue_module.AVAILABLE, reason="replay/_venue_fast.c not built")


@pytest.mark.parametrize("model", ("risk-averse", "fifo", "prob-power:3"))
def test_recorded_day_same_report(tmp_path, model):
    run_setup = setup(recorded_day(tmp_path / "recorded"), MarketMaker, MarketMakerParameters(), queue_model=model,
                      latency=Latency(feed_ns=20_000, entry_ns=30_000, ack_ns=30_000), seed=4)
    (compiled, record), (python, _) = reports_both_ways(run_setup)
    assert compiled == python
    assert len(record.fills) > 10

