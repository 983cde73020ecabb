"""The backtest's hot path runs what live runs (the compiled risk check set) and its event loop's shortcuts
(the timer queue's ``due_ns`` lower bound) keep the order and clock of events."""
from __future__ import annotations

import pytest

from appliance.backtest.engine import Backtest
from appliance.replay.latency import Latency
from appliance.risk import fast
from appliance.strategy.api import Strategy
from appliance.strategy.market_maker import MarketMaker, MarketMakerParameters
from backtest_days import MS, T0, Day, Probe, recorded_day, setup


@pytest.mark.skipif(not fast.AVAILABLE, reason="risk/_risk_fast.c not built")
def test_risk_decides_with_the_compiled_check_set_as_the_risk_agent_does(tmp_path):
    bt = Backtest(setup(recorded_day(tmp_path / "recorded"), MarketMaker, MarketMakerParameters()))
    record = bt.run()
    assert record.orders > 10
    assert type(bt.check).__name__ == "FastCheck"
    assert bt.check.decided > 0 and bt.check.decided + bt.check.fallbacks >= record.intents


class CancelsATimer(Strategy):
    """Schedules a timer at 5 ms and one at 8 ms after its start, cancels the first; notes books and timers."""

    seen: list = []

    def on_start(self):
        CancelsATimer.seen = self.events = []
        self.schedule(lambda now: self.events.append(("early", now)), after_ns=5 * MS).cancel()
        self.schedule(lambda now: self.events.append(("timer", now, self.clock.now_ns())), after_ns=8 * MS)

    def on_book(self, book):
        self.events.append(("book", self.clock.now_ns(), book.bid_price))


def test_a_cancelled_timer_neither_fires_nor_moves_the_clock(tmp_path):
    day = Day(tmp_path / "day.bin")
    day.add("AAPL", "B", 100, 1_899_000, T0)
    day.add("AAPL", "B", 100, 1_899_100, T0 + 6 * MS)          # after the cancelled timer's deadline
    day.add("AAPL", "B", 100, 1_899_200, T0 + 12 * MS)         # after the live one's
    path = day.close(T0 + 20 * MS)
    Backtest(setup(path, CancelsATimer, latency=Latency(feed_ns=1_000, entry_ns=0, ack_ns=0))).run()
    start = Probe.day_start(None)
    events = [(e[0], e[1] - start) + e[2:] for e in CancelsATimer.seen if e[0] != "book" or e[2] != 0]
    assert [e for e in events if e[0] != "book" or e[2] > 1_899_000] == [
        ("book", 6 * MS + 1_000, 1_899_100),
        ("timer", 8 * MS, 8 * MS + start),
        ("book", 12 * MS + 1_000, 1_899_200)]
