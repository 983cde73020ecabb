"""Every clock the strategy API shows runs on event time in a backtest: ``now_ns()``, ``clock.now_ns()``, the
timers and a book's own stamps (the same inputs give the same answers, whatever the wall clock says)."""
from __future__ import annotations

from appliance.backtest.engine import Backtest
from appliance.replay.latency import Latency
from appliance.strategy.api import Strategy
from backtest_days import MS, T0, Day, setup


class ReadsTheClock(Strategy):
    """Writes down what each clock said in ``on_book`` and in a timer."""

    seen: list = []

    def on_start(self):
        ReadsTheClock.seen = []
        self.schedule(self.tick, after_ns=3 * MS)

    def tick(self, now_ns):
        ReadsTheClock.seen.append(("timer", now_ns, self.now_ns(), self.clock.now_ns()))

    def on_book(self, book):
        if book.bid_price or book.ask_price:
            ReadsTheClock.seen.append(("book", self.clock.event_exchange_ns, self.now_ns(), self.clock.now_ns()))
            ReadsTheClock.seen.append(("stamps", book.t_exchange_ns, book.t_rx_ns, book.t_feed_out_ns))


def test_now_ns_and_timers_read_event_time_in_a_backtest(tmp_path):
    day = Day(tmp_path / "day.bin")
    day.add("AAPL", "B", 100, 1_899_900, T0 + 1 * MS)
    day.add("AAPL", "S", 100, 1_900_100, T0 + 5 * MS)
    path = day.close(T0 + 10 * MS)
    runs = []
    for _ in range(2):
        bt = Backtest(setup(path, ReadsTheClock, latency=Latency(feed_ns=7_000, entry_ns=0, ack_ns=0)))
        bt.run()
        runs.append(list(ReadsTheClock.seen))
    midnight = bt.midnight
    books = [(exchange - midnight, now - midnight, clock - midnight)
             for kind, exchange, now, clock in runs[0] if kind == "book"]
    assert books == [(T0 + 1 * MS, T0 + 1 * MS + 7_000, T0 + 1 * MS + 7_000),      # seen feed_ns after it happened
                     (T0 + 5 * MS, T0 + 5 * MS + 7_000, T0 + 5 * MS + 7_000)]
    stamps = [(exchange - midnight, rx - midnight, out - midnight)
              for kind, exchange, rx, out in runs[0] if kind == "stamps"]
    assert stamps == books                                  # received and sent on by the feed when the strategy sees it
    timers = [(fired - midnight, now - midnight, clock - midnight) for kind, fired, now, clock in runs[0]
              if kind == "timer"]
    assert timers == [(T0 + 3 * MS,) * 3]                  # the strategy started with the day's first message
    assert runs[0] == runs[1]
